package localcloud

import "net/http"

// readRoutes adds the read side (archived media and GetMedia).
func (s *streamService) readRoutes(mux *http.ServeMux) {}
