// Package httpmetrics measures an HTTP API for Prometheus: how long each request took, by the
// net/http ServeMux pattern that served it and the status code it got, as the histogram
// agora_http_request_duration_seconds{route, code}. Masters and agents measure their APIs
// with it.
//
// Use:
//
//  1. New makes the histogram; register it (a Metrics is a prometheus.Collector) on the
//     registry that /metrics serves.
//  2. Wrap the handler that holds the ServeMux: the route is read from Request.Pattern once
//     the request has been served, so the mux must get the very *http.Request that Wrap
//     passes on (middleware in between must not replace it with a copy). A handler that
//     answers before the mux (a proxy, say) may set Request.Pattern itself.
//
// The route is a registered pattern ("GET /v1/tasks/{id}") or "unmatched", never a raw path,
// so the number of series stays bounded whatever clients ask for.
package httpmetrics
