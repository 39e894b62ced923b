package preheat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrAPI is wrapped by a Client's errors for an answer other than success:
// the message is the API's own.
var ErrAPI = errors.New("preheat: API refused")

// Client calls a seeder's preheat API (Service.Handler), as the eagle
// preheat command does.
type Client struct {
	// URL is the API's base URL, "http://seeder:5004". Required.
	URL string
	// Secret is the shared secret; empty sends none.
	Secret string
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Submit starts (or joins) a job for req.
func (c *Client) Submit(ctx context.Context, req Request) (Job, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Job{}, fmt.Errorf("preheat: %w", err)
	}
	var j Job
	return j, c.do(ctx, http.MethodPost, "/preheat", body, http.StatusAccepted, &j)
}

// Job returns the state of the job with id.
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	var j Job
	return j, c.do(ctx, http.MethodGet, "/preheat/"+url.PathEscape(id), nil, http.StatusOK, &j)
}

// Wait polls the job with id every interval (a second when zero or
// negative), calling progress (if not nil) with each state, until the job
// ends or ctx is done.
func (c *Client) Wait(ctx context.Context, id string, interval time.Duration, progress func(Job)) (Job, error) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return j, err
		}
		if progress != nil {
			progress(j)
		}
		if j.Ended() {
			return j, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return j, fmt.Errorf("preheat: wait for job %s: %w", id, ctx.Err())
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, want int, v any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.URL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("preheat: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.Secret)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("preheat: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("preheat: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return fmt.Errorf("%w: %s %s: %d: %s", ErrAPI, method, path, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("preheat: %s %s: answer: %w", method, path, err)
	}
	return nil
}
