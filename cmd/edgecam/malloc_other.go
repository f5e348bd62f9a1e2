//go:build !linux || !cgo

package main

// limitMallocArenas does nothing where glibc's malloc is not the allocator.
func limitMallocArenas() {}
