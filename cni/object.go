package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Object is a JSON object whose values are kept as the exact bytes they were
// written with, in their original order. The runtime uses it to derive a
// plugin's request from its configuration: keys are added, replaced or removed,
// and everything else reaches the plugin byte for byte. The zero value is an
// empty object ready to use.
type Object struct {
	keys   []string
	values map[string]json.RawMessage
}

// ParseObject splits a JSON object into its keys and raw values. Keys are
// decoded (escapes resolved); values are not touched. A key given twice keeps
// its first position and its last value, which is what encoding/json reads.
func ParseObject(data []byte) (*Object, error) {
	if !json.Valid(data) {
		// Check the whole document first: the token reader below would accept
		// some malformed input (a trailing comma, for instance).
		var v any
		err := json.Unmarshal(data, &v)
		return nil, Errorf(CodeDecodingFailure, "decoding JSON object: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, Errorf(CodeDecodingFailure, "decoding JSON object: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, Errorf(CodeDecodingFailure, "decoding JSON object: not an object")
	}
	o := &Object{values: map[string]json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, Errorf(CodeDecodingFailure, "decoding JSON object: %v", err)
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, Errorf(CodeDecodingFailure, "decoding JSON object: key %q: %v", key, err)
		}
		o.SetRaw(key, value)
	}
	if _, err := dec.Token(); err != nil {
		return nil, Errorf(CodeDecodingFailure, "decoding JSON object: %v", err)
	}
	return o, nil
}

// Keys returns the object's keys in order.
func (o *Object) Keys() []string { return slices.Clone(o.keys) }

// Get returns the raw value of key.
func (o *Object) Get(key string) (json.RawMessage, bool) {
	v, ok := o.values[key]
	return v, ok
}

// SetRaw sets key to a raw JSON value, keeping its position if it exists. The
// value must be valid JSON; Bytes writes it as given.
func (o *Object) SetRaw(key string, value json.RawMessage) {
	if o.values == nil {
		o.values = map[string]json.RawMessage{}
	}
	if _, ok := o.values[key]; !ok {
		o.keys = append(o.keys, key)
	}
	o.values[key] = value
}

// Set sets key to v marshalled as JSON.
func (o *Object) Set(key string, v any) error {
	if key == "" {
		return fmt.Errorf("empty key")
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %q: %w", key, err)
	}
	o.SetRaw(key, data)
	return nil
}

// Delete removes key.
func (o *Object) Delete(key string) {
	if _, ok := o.values[key]; !ok {
		return
	}
	delete(o.values, key)
	for i, k := range o.keys {
		if k == key {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			break
		}
	}
}

// Bytes encodes the object: its keys in order, each value as stored.
func (o *Object) Bytes() []byte {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeKey(&buf, k)
		buf.WriteByte(':')
		buf.Write(o.values[k])
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// writeKey writes k as a JSON string without escaping <, > and &, so that keys
// come out as they were written.
func writeKey(buf *bytes.Buffer, k string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(k)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode appends a newline
}
