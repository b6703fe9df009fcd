// Package api holds the JSON shapes of Agora's HTTP API that servers and clients share: the
// master's operator endpoints now, the scheduler, Marathon and Metronome shapes as they come.
// It has no behaviour; master/ writes these and pkg/client reads them.
package api
