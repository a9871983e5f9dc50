package cni

import (
	"regexp"
	"strings"
	"testing"
)

type validationCase struct {
	name    string
	value   string
	code    Code   // 0: valid
	wantMsg string // must appear in the message
}

func runValidation(t *testing.T, validate func(string) *Error, tests []validationCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(tt.value)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("%q refused: %v", tt.value, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%q accepted", tt.value)
			}
			if err.Code != tt.code {
				t.Errorf("code %d, want %d (%v)", err.Code, tt.code, err)
			}
			if !strings.Contains(err.Msg, tt.wantMsg) {
				t.Errorf("msg %q does not contain %q", err.Msg, tt.wantMsg)
			}
		})
	}
}

func TestValidateContainerID(t *testing.T) {
	runValidation(t, ValidateContainerID, []validationCase{
		{"hex id", "0123456789abcdef", 0, ""},
		{"all allowed characters", "Abc-1_2.z", 0, ""},
		{"single character", "a", 0, ""},
		{"cnitool style", "cnitool-8fe1a0f1aa7e4a9b3c21", 0, ""},
		{"empty is code 3", "", CodeUnknownContainer, "missing containerID"},
		{"leading dash", "-abc", CodeInvalidEnvironment, `"-abc"`},
		{"leading dot", ".abc", CodeInvalidEnvironment, `".abc"`},
		{"leading underscore", "_abc", CodeInvalidEnvironment, `"_abc"`},
		{"slash", "a/b", CodeInvalidEnvironment, `"a/b"`},
		{"dot dot slash", "../etc", CodeInvalidEnvironment, `"../etc"`},
		{"space", "a b", CodeInvalidEnvironment, `"a b"`},
		{"newline", "abc\n", CodeInvalidEnvironment, `"abc\n"`},
		{"non-ASCII", "caf\u00e9", CodeInvalidEnvironment, "caf"},
	})
}

func TestValidateNetworkName(t *testing.T) {
	runValidation(t, ValidateNetworkName, []validationCase{
		{"simple", "mynet", 0, ""},
		{"all allowed characters", "my-net_1.2", 0, ""},
		{"empty", "", CodeInvalidNetworkConfig, "missing network name"},
		{"slash", "a/b", CodeInvalidNetworkConfig, `"a/b"`},
		{"leading dot", ".hidden", CodeInvalidNetworkConfig, `".hidden"`},
		{"dot dot", "..", CodeInvalidNetworkConfig, `".."`},
		{"colon", "a:b", CodeInvalidNetworkConfig, `"a:b"`},
		{"space", "my net", CodeInvalidNetworkConfig, `"my net"`},
	})
}

func TestValidateInterfaceName(t *testing.T) {
	runValidation(t, ValidateInterfaceName, []validationCase{
		{"eth0", "eth0", 0, ""},
		{"15 bytes", "abcdefghijklmno", 0, ""},
		{"dash and dot", "veth-a.1", 0, ""},
		{"at sign", "a@b", 0, ""},
		{"empty", "", CodeInvalidEnvironment, "interface name is empty"},
		{"16 bytes", "abcdefghijklmnop", CodeInvalidEnvironment, `"abcdefghijklmnop" is too long`},
		{"multi-byte over 15 bytes", "ééééééééé", CodeInvalidEnvironment, "too long"},
		{"dot", ".", CodeInvalidEnvironment, `"." is . or ..`},
		{"dot dot", "..", CodeInvalidEnvironment, `".." is . or ..`},
		{"slash", "a/b", CodeInvalidEnvironment, `"a/b" contains '/'`},
		{"colon", "eth0:1", CodeInvalidEnvironment, `"eth0:1" contains ':'`},
		{"space", "eth 0", CodeInvalidEnvironment, `"eth 0" contains ' '`},
		{"tab", "eth\t0", CodeInvalidEnvironment, `contains '\t'`},
		{"non-breaking space", "eth\u00a00", CodeInvalidEnvironment, `contains '\u00a0'`},
	})
}

func TestValidatePluginType(t *testing.T) {
	runValidation(t, ValidatePluginType, []validationCase{
		{"bridge", "bridge", 0, ""},
		{"dashes", "host-local", 0, ""},
		{"dots and underscores", "my_plugin.v2", 0, ""},
		{"empty", "", CodeInvalidNetworkConfig, "missing plugin type"},
		{"absolute path", "/bin/sh", CodeInvalidNetworkConfig, `"/bin/sh"`},
		{"relative path", "../../bin/sh", CodeInvalidNetworkConfig, `"../../bin/sh"`},
		{"backslash", `a\b`, CodeInvalidNetworkConfig, `"a\\b"`},
		{"dot", ".", CodeInvalidNetworkConfig, `"."`},
		{"dot dot", "..", CodeInvalidNetworkConfig, `".."`},
		{"leading dash", "-x", CodeInvalidNetworkConfig, `"-x"`},
		{"space", "a b", CodeInvalidNetworkConfig, `"a b"`},
	})
}

// isName must agree with the pattern it replaces, on every short string over
// an alphabet that covers each class of character.
func TestIsNameMatchesPattern(t *testing.T) {
	re := regexp.MustCompile(namePattern)
	alphabet := []string{"a", "Z", "0", "_", ".", "-", "/", " ", "é", ":", "\x00"}
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		if got, want := isName(prefix), re.MatchString(prefix); got != want {
			t.Fatalf("isName(%q) = %v, pattern says %v", prefix, got, want)
		}
		if depth == 0 {
			return
		}
		for _, c := range alphabet {
			walk(prefix+c, depth-1)
		}
	}
	walk("", 3)
}
