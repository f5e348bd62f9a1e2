package config

import "regexp"

// urlPassword matches the password of a URL's user info, in any text.
var urlPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s"]*):[^@/\s"]*@`)

// RedactURL hides URL passwords in s (a URL, a pipeline description, an error message):
// rtsp://admin:secret@cam/stream becomes rtsp://admin:***@cam/stream.
func RedactURL(s string) string {
	return urlPassword.ReplaceAllString(s, "$1:***@")
}
