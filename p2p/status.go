package p2p

import (
	"net/http"
	"strconv"
)

func httpStatusText(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}
