// Package packaging holds no library code: its tests check the Debian packaging next to it
// (build-deb.sh, the computed Depends, gst-elements.txt against the pipelines media/ builds,
// the cross-built ARM .debs and the factory image flow in image/).
package packaging
