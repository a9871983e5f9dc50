package cni

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ParseArgs splits a CNI_ARGS string "K1=V1;K2=V2" into pairs. Every pair must
// hold exactly one '='. An empty string gives no pairs.
func ParseArgs(s string) ([][2]string, error) {
	if s == "" {
		return nil, nil
	}
	var pairs [][2]string
	for _, item := range strings.Split(s, ";") {
		kv := strings.Split(item, "=")
		if len(kv) != 2 {
			return nil, Errorf(CodeInvalidEnvironment, "CNI_ARGS: invalid pair %q", item)
		}
		pairs = append(pairs, [2]string{kv[0], kv[1]})
	}
	return pairs, nil
}

// FormatArgs joins pairs into a CNI_ARGS string.
func FormatArgs(pairs [][2]string) string {
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p[0] + "=" + p[1]
	}
	return strings.Join(parts, ";")
}

// CommonArgs holds the CNI_ARGS key every plugin understands. Embed it in a
// plugin's args struct.
type CommonArgs struct {
	IgnoreUnknown ArgBool
}

// ArgBool is a CNI_ARGS boolean: 1/true/True/0/false/False, any case.
type ArgBool bool

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ArgBool) UnmarshalText(data []byte) error {
	switch strings.ToLower(string(data)) {
	case "1", "true":
		*b = true
	case "0", "false":
		*b = false
	default:
		return fmt.Errorf("boolean unmarshal error: invalid input %q", data)
	}
	return nil
}

// LoadArgs fills the exported fields of the struct dst points to from a CNI_ARGS
// string, matching keys to field names exactly (case-sensitive). Fields may
// implement encoding.TextUnmarshaler (net.IP does; an empty value leaves it nil,
// as in the reference) or be strings, bools, or signed or unsigned integers;
// embedded structs such as CommonArgs are searched too. Unknown keys are an
// error unless the string sets IgnoreUnknown to true. Errors are code 4.
func LoadArgs(s string, dst any) error {
	pairs, err := ParseArgs(s)
	if err != nil {
		return err
	}
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("LoadArgs needs a non-nil pointer to a struct, not %T", dst)
	}
	ignoreUnknown := false
	for _, p := range pairs {
		if p[0] == "IgnoreUnknown" {
			var b ArgBool
			if err := b.UnmarshalText([]byte(p[1])); err != nil {
				return Errorf(CodeInvalidEnvironment, "CNI_ARGS: IgnoreUnknown=%q: %v", p[1], err)
			}
			ignoreUnknown = bool(b)
		}
	}
	var unknown []string
	for _, p := range pairs {
		field, ok := argField(v.Elem(), p[0])
		if !ok {
			if p[0] != "IgnoreUnknown" {
				unknown = append(unknown, p[0]+"="+p[1])
			}
			continue
		}
		if err := setArgField(field, p[1]); err != nil {
			return Errorf(CodeInvalidEnvironment, "CNI_ARGS: %s=%q: %v", p[0], p[1], err)
		}
	}
	if len(unknown) > 0 && !ignoreUnknown {
		return Errorf(CodeInvalidEnvironment, "CNI_ARGS: unknown args %q", unknown)
	}
	return nil
}

// argField finds the settable field called name in the struct v, allocating
// the nil embedded struct pointers on the way to it.
func argField(v reflect.Value, name string) (reflect.Value, bool) {
	sf, ok := v.Type().FieldByName(name)
	if !ok || !sf.IsExported() {
		return reflect.Value{}, false
	}
	for i, idx := range sf.Index {
		if i > 0 {
			if v.Kind() == reflect.Pointer {
				if v.IsNil() {
					if !v.CanSet() {
						return reflect.Value{}, false
					}
					v.Set(reflect.New(v.Type().Elem()))
				}
				v = v.Elem()
			}
		}
		v = v.Field(idx)
	}
	return v, v.CanSet()
}

func setArgField(field reflect.Value, value string) error {
	if u, ok := field.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(value))
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(value)
	case reflect.Bool:
		var b ArgBool
		if err := b.UnmarshalText([]byte(value)); err != nil {
			return err
		}
		field.SetBool(bool(b))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(value, 10, field.Type().Bits())
		if err != nil {
			return fmt.Errorf("not a %d-bit integer", field.Type().Bits())
		}
		field.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(value, 10, field.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an unsigned %d-bit integer", field.Type().Bits())
		}
		field.SetUint(n)
	default:
		return fmt.Errorf("field of type %s cannot hold a CNI_ARGS value", field.Type())
	}
	return nil
}
