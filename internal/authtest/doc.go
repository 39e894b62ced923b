// Package authtest holds end-to-end tests of Eagle in front of origins that
// require authentication (htpasswd basic auth, docker token auth) and of
// multi-platform images: a whole cluster in one process (internal/cluster),
// pulled through with containerd's resolver (internal/pull). It has no API.
package authtest
