package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Object is a JSON object whose values are kept as the exact bytes they were
// written with, in their original order. The runtime uses it to derive a
// plugin's request from its configuration: keys are added, replaced or removed,
// and everything else reaches the plugin byte for byte.
type Object struct {
	keys   []string
	values map[string]json.RawMessage
}

// ParseObject splits a JSON object into its keys and raw values.
func ParseObject(data []byte) (*Object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
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
		if _, dup := o.values[key]; !dup {
			o.keys = append(o.keys, key)
		}
		o.values[key] = value // the last duplicate wins, as in encoding/json
	}
	if _, err := dec.Token(); err != nil {
		return nil, Errorf(CodeDecodingFailure, "decoding JSON object: %v", err)
	}
	if dec.More() {
		return nil, Errorf(CodeDecodingFailure, "decoding JSON object: trailing data")
	}
	return o, nil
}

// Get returns the raw value of key.
func (o *Object) Get(key string) (json.RawMessage, bool) {
	v, ok := o.values[key]
	return v, ok
}

// SetRaw sets key to a raw JSON value, keeping its position if it exists.
func (o *Object) SetRaw(key string, value json.RawMessage) {
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
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(o.values[k])
	}
	buf.WriteByte('}')
	return buf.Bytes()
}
