// Package chaos will run real multi-process Agora clusters on loopback, break them on purpose
// (kill leaders, cut agents off, restart processes) and check the invariants: no acknowledged
// write lost, desired instances reached, no cron run launched twice, no agent over-committed.
// It is built by the chaos issue; for now it holds only this description.
package chaos
