package localcloud

import "net/http"

// routes adds the stream control plane, PutMedia, the read side and the counters to mux.
func (s *streamService) routes(mux *http.ServeMux) {
	s.controlRoutes(mux)
	mux.HandleFunc("/putMedia", s.putMedia)
	mux.HandleFunc("/kvs/streams/", s.serveStats)
	mux.HandleFunc("/kvs/streams", s.serveStats)
	s.readRoutes(mux)
}
