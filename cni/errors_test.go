package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestErrorJSON(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"all fields", &Error{CNIVersion: "1.1.0", Code: 7, Msg: "Invalid Configuration", Details: "Network 192.168.0.0/31 too small to allocate from."},
			`{"cniVersion":"1.1.0","code":7,"msg":"Invalid Configuration","details":"Network 192.168.0.0/31 too small to allocate from."}`},
		{"no version, no details", &Error{Code: 4, Msg: "bad env"}, `{"code":4,"msg":"bad env"}`},
		{"code 0 and empty msg are still written", &Error{}, `{"code":0,"msg":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.err)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			var back Error
			if err := json.Unmarshal(got, &back); err != nil || back != *tt.err {
				t.Errorf("decoded back as %+v, %v", back, err)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Code: 1, Msg: "incompatible CNI versions"}, "incompatible CNI versions"},
		{&Error{Code: 1, Msg: "incompatible CNI versions", Details: `config is "9.0.0"`}, `incompatible CNI versions; config is "9.0.0"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestErrorf(t *testing.T) {
	inner := errors.New("disk full")
	e := Errorf(CodeIOFailure, "writing %s: %w", "state", inner)
	if e.Code != CodeIOFailure || e.Msg != "writing state: disk full" || e.Details != "" {
		t.Errorf("got %+v", e)
	}
	d := e.WithDetails("more")
	if d.Details != "more" || e.Details != "" || d.Msg != e.Msg || d.Code != e.Code {
		t.Errorf("WithDetails: %+v (original %+v)", d, e)
	}
}

func TestAsErrorAndCodeOf(t *testing.T) {
	typed := &Error{CNIVersion: "1.0.0", Code: CodeTryAgainLater, Msg: "busy", Details: "lock held"}
	tests := []struct {
		name     string
		err      error
		wantCode Code
		wantMsg  string
		same     bool // AsError returns typed itself
	}{
		{"nil", nil, CodeUnknown, "", false},
		{"plain error is 999", errors.New("boom"), CodeInternal, "boom", false},
		{"typed passes through", typed, CodeTryAgainLater, "busy", true},
		{"wrapped typed keeps code and context", fmt.Errorf("bridge: %w", typed), CodeTryAgainLater, "bridge: busy; lock held", false},
		{"wrapped typed without context", fmt.Errorf("%w", typed), CodeTryAgainLater, "busy", true},
		{"joined", errors.Join(errors.New("first"), Errorf(CodePluginNotAvailable, "down")), CodePluginNotAvailable, "first\ndown", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CodeOf(tt.err); got != tt.wantCode {
				t.Errorf("CodeOf = %d, want %d", got, tt.wantCode)
			}
			e := AsError(tt.err)
			if tt.err == nil {
				if e != nil {
					t.Errorf("AsError(nil) = %+v", e)
				}
				return
			}
			if e.Code != tt.wantCode || e.Msg != tt.wantMsg {
				t.Errorf("AsError = %+v, want code %d msg %q", e, tt.wantCode, tt.wantMsg)
			}
			if tt.same && e != typed {
				t.Errorf("AsError made a new error: %+v", e)
			}
		})
	}
}

func TestWellKnownCodes(t *testing.T) {
	// The numbers are part of the protocol (spec-notes E2, E3).
	codes := map[Code]Code{
		CodeUnknown: 0, CodeIncompatibleVersion: 1, CodeUnsupportedField: 2, CodeUnknownContainer: 3,
		CodeInvalidEnvironment: 4, CodeIOFailure: 5, CodeDecodingFailure: 6, CodeInvalidNetworkConfig: 7,
		CodeInvalidNetNS: 8, CodeTryAgainLater: 11, CodePluginNotAvailable: 50, CodeLimitedConnectivity: 51,
		CodeInternal: 999,
	}
	for got, want := range codes {
		if got != want {
			t.Errorf("code %d, want %d", got, want)
		}
	}
}
