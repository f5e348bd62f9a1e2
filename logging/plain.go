package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap/zapcore"
)

// Fprintln writes a plain message (not a zap record: the error a command ends with, printed
// before or after its logger exists) to w, followed by a newline. When w is the journal
// stream (UnderJournal), every line of it starts with level's sd-daemon priority prefix, so
// that journald files a failing service's last words as an error and `journalctl -p err`
// shows them; anywhere else the text is written as it is.
func Fprintln(w io.Writer, level zapcore.Level, a ...any) error {
	text := strings.TrimSuffix(fmt.Sprintln(a...), "\n")
	if f, ok := w.(*os.File); ok && UnderJournal(f) {
		prefix := fmt.Sprintf("<%d>", Priority(level))
		var b strings.Builder
		for line := range strings.SplitSeq(text, "\n") {
			b.WriteString(prefix)
			b.WriteString(line)
			b.WriteByte('\n')
		}
		text = b.String()
	} else {
		text += "\n"
	}
	_, err := io.WriteString(w, text)
	return err
}
