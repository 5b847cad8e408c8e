// Command identify sends one identify to plainflow-relay over its Unix
// socket and over TCP with net/http (a Transport that dials the socket).
// A 503 (the relay cannot store the call now) is retried after the
// Retry-After it gave, with the same message_id: the relay stores it once.
//
//	PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
//	PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 go run . [USER_ID]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const attempts = 5

type message struct {
	Type      string         `json:"type"`
	UserID    string         `json:"user_id"`
	MessageID string         `json:"message_id"`
	Traits    map[string]any `json:"traits"`
}

type answer struct {
	OK        bool     `json:"ok"`
	MessageID string   `json:"message_id"`
	Errors    []string `json:"errors"`
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// identify posts one identify to base+"/v1/identify" and returns the relay's answer once it is stored.
func identify(via string, client *http.Client, base, userID string) (*answer, error) {
	m := message{Type: "identify", UserID: userID, MessageID: newID(), Traits: map[string]any{
		"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "plan": "premium", "logins": 5,
	}}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	for i := 0; i < attempts; i++ {
		resp, err := client.Post(base+"/v1/identify", "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", via, err)
		}
		var a answer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: unreadable answer (%d): %w", via, resp.StatusCode, err)
		}
		fmt.Println(via, resp.StatusCode, m.MessageID)
		switch {
		case resp.StatusCode == http.StatusOK && a.OK:
			return &a, nil
		case resp.StatusCode == http.StatusServiceUnavailable: // not stored: the same message again, later
			wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil {
				wait = 5
			}
			time.Sleep(time.Duration(wait) * time.Second)
		default:
			return nil, fmt.Errorf("%s: refused (%d): %s", via, resp.StatusCode, strings.Join(a.Errors, "; "))
		}
	}
	return nil, fmt.Errorf("%s: still 503 after %d attempts", via, attempts)
}

func main() {
	socket := os.Getenv("PLAINFLOW_RELAY_SOCKET")
	if socket == "" {
		socket = "/run/plainflow-relay/relay.sock"
	}
	url := os.Getenv("PLAINFLOW_RELAY_URL")
	if url == "" {
		url = "http://127.0.0.1:8787"
	}
	userID := "97980cfea0067"
	if len(os.Args) > 1 {
		userID = os.Args[1]
	}
	// HTTP over the Unix socket: the host in the URL is only a name.
	unix := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	tcp := &http.Client{Timeout: 30 * time.Second}
	if _, err := identify("unix", unix, "http://relay", userID); err != nil {
		fmt.Fprintln(os.Stderr, "identify failed:", err)
		os.Exit(1)
	}
	if _, err := identify("tcp", tcp, url, userID); err != nil {
		fmt.Fprintln(os.Stderr, "identify failed:", err)
		os.Exit(1)
	}
}
