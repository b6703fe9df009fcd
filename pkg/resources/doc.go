// Package resources is what agents offer and tasks use: cpus, mem and disk (MiB) as scalars
// kept to three decimals, and ports as sets of ranges. Add, Subtract, Contains and Fits never
// produce negative amounts: a subtraction that does not fit fails with ErrInsufficient and
// changes nothing. Text and JSON follow Mesos: the agent flag form
// "cpus:4;mem:8192;ports:[31000-32000]", the /state object form and the v1 array form.
package resources
