package localcloud

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

// viewerFiles is the live-view page: a KVS WebRTC viewer in plain JavaScript.
//
//go:embed viewer
var viewerFiles embed.FS

// viewerPage serves the page under /viewer/, and its viewer.json (the viewer key pair, the
// channel of the newest master, and this endpoint as the control plane).
func (k *kvsServer) viewerPage() http.Handler {
	sub, _ := fs.Sub(viewerFiles, "viewer")
	files := http.StripPrefix("/viewer/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/viewer/viewer.json" {
			k.mu.Lock()
			vc := k.viewer
			k.mu.Unlock()
			if r.TLS != nil {
				vc.ControlPlaneURL = "https://" + k.addr
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_ = json.NewEncoder(w).Encode(vc)
			return
		}
		files.ServeHTTP(w, r)
	})
}
