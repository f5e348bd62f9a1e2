//go:build race

package main

// raceEnabled makes TestMain build the binary with -race too, so that one build of the cgo
// dependencies serves both.
const raceEnabled = true
