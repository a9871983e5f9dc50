package cni

import (
	"errors"
	"fmt"
)

// Code is a CNI error code. 1-99 are reserved for the spec's well-known errors,
// 100 and above are free for plugins.
type Code uint

// The spec's well-known error codes, and the library-only ones the reference uses.
const (
	CodeUnknown              Code = 0
	CodeIncompatibleVersion  Code = 1
	CodeUnsupportedField     Code = 2
	CodeUnknownContainer     Code = 3
	CodeInvalidEnvironment   Code = 4
	CodeIOFailure            Code = 5
	CodeDecodingFailure      Code = 6
	CodeInvalidNetworkConfig Code = 7
	CodeInvalidNetNS         Code = 8 // library-only, as in the reference skel
	CodeTryAgainLater        Code = 11
	CodePluginNotAvailable   Code = 50
	CodeLimitedConnectivity  Code = 51
	CodeInternal             Code = 999 // a plain Go error from a plugin
)

// Error is the spec's error object. It is what a plugin prints on stdout when it
// fails, and what the runtime library returns when one did.
type Error struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Code       Code   `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

// Error returns the message, followed by the details when there are any.
func (e *Error) Error() string {
	if e.Details == "" {
		return e.Msg
	}
	return e.Msg + "; " + e.Details
}

// Errorf builds an Error with the given code and a formatted message. The format
// is that of fmt.Errorf, so %w may be used for an error argument (only its text
// is kept).
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Errorf(format, args...).Error()}
}

// WithDetails returns a copy of e carrying details.
func (e *Error) WithDetails(details string) *Error {
	c := *e
	c.Details = details
	return &c
}

// AsError finds the *Error in err's chain; a plain error becomes CodeInternal with
// err's text. It returns nil for a nil err.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Msg == "" || err.Error() == e.Error() {
			return e
		}
		// Keep the code but let the wrapping context reach the user.
		return &Error{CNIVersion: e.CNIVersion, Code: e.Code, Msg: err.Error()}
	}
	return &Error{Code: CodeInternal, Msg: err.Error()}
}

// CodeOf returns the CNI code carried by err, CodeInternal for a plain error and
// CodeUnknown for nil.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return CodeUnknown
	}
	return CodeInternal
}
