package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Auto-refresh: ?refresh=N on the overview, jobs and workers pages makes
// the page reload itself every N seconds with a <meta http-equiv="refresh">
// tag, which needs no script (the Content-Security-Policy allows none). It
// is opt-in, per page, and bounded, so that a forgotten tab cannot hammer
// the database: N is 2 to 300.

const (
	minRefresh = 2
	maxRefresh = 300
)

// refreshable are the pages that offer auto-refresh.
var refreshable = map[string]bool{"overview": true, "jobs": true, "workers": true}

// refreshChoices are the periods the pages link to.
var refreshChoices = []int{5, 30}

type refreshLink struct {
	Label, URL, ID string
	On             bool
}

// refreshPeriod reads ?refresh=: 0 when absent, an error when it is not a
// number of seconds from minRefresh to maxRefresh.
func refreshPeriod(r *http.Request) (int, error) {
	s := r.URL.Query().Get("refresh")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < minRefresh || n > maxRefresh {
		return 0, fmt.Errorf("refresh must be a number of seconds from %d to %d", minRefresh, maxRefresh)
	}
	return n, nil
}

// refreshOK answers a bad ?refresh= with 400 and reports whether it was fine.
func (h *Handler) refreshOK(w http.ResponseWriter, r *http.Request) bool {
	if _, err := refreshPeriod(r); err != nil {
		h.message(w, r, http.StatusBadRequest, "Bad refresh period", err.Error()+", or leave it out to turn auto-refresh off.")
		return false
	}
	return true
}

// refreshLinks returns the address the page reloads (itself, without the
// flash of an action, so that the flash is not shown again and again) and
// the links that turn auto-refresh off or set its period.
func (h *Handler) refreshLinks(r *http.Request, current int) (string, []refreshLink) {
	q := r.URL.Query()
	q.Del("done")
	q.Del("refresh")
	with := func(n int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		if n > 0 {
			v.Set("refresh", strconv.Itoa(n))
		}
		u := h.opts.Prefix + r.URL.EscapedPath()
		if e := v.Encode(); e != "" {
			u += "?" + e
		}
		return u
	}
	links := []refreshLink{{Label: "off", URL: with(0), ID: "refresh-off", On: current == 0}}
	choices := refreshChoices
	if current != 0 && current != 5 && current != 30 {
		choices = append([]int{current}, choices...)
	}
	for _, n := range choices {
		links = append(links, refreshLink{Label: strconv.Itoa(n) + "s", URL: with(n), ID: "refresh-" + strconv.Itoa(n), On: n == current})
	}
	reload := ""
	if current > 0 {
		reload = with(current)
	}
	return reload, links
}
