// Package analyze tests kiln layers and kiln diff end to end on real
// builds: a 50 MB file added by one RUN and removed by a later one is
// reported as wasted with both lines, layers --json agrees with inspect,
// diff names the A/C/D changes between two builds, the same Dockerfile
// built on two stores shows no difference, and bad arguments are clear
// errors.
package analyze
