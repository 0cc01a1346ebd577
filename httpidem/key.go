package httpidem

import (
	"errors"
	"fmt"
	"strings"
)

// MaxKeyLen is the longest key accepted, in characters.
const MaxKeyLen = 255

// KeyError is an Idempotency-Key header that cannot be used; the
// middleware answers it with 400.
type KeyError struct{ Msg string }

func (e *KeyError) Error() string { return "Idempotency-Key: " + e.Msg }

var errNoKey = &KeyError{Msg: "missing"}

// ParseKey reads the Idempotency-Key field. The draft
// (draft-ietf-httpapi-idempotency-key-header) makes it a Structured Field
// Item whose value is a String (RFC 8941 §3.3.3): "…" with only \" and \\
// escapes and printable ASCII inside, optionally followed by parameters,
// which carry no meaning here and are checked for syntax only. Several
// field lines combine into a list, which is not an Item: rejected. Written
// by hand because the standard library has no Structured Field parser and
// only this one small production is needed.
func ParseKey(lines []string) (string, error) { return parseKey(lines, false) }

// ParseBareKey is ParseKey that also takes a key sent without quotes, as
// Stripe's API and most clients send it (Idempotency-Key: 8e03978e-…).
// Such a key is the field's text, which must then be visible ASCII with
// no quote, comma or semicolon, so that nothing a Structured Field
// parser would read differently passes as a bare key.
func ParseBareKey(lines []string) (string, error) { return parseKey(lines, true) }

func parseKey(lines []string, bare bool) (string, error) {
	if len(lines) == 0 {
		return "", errNoKey
	}
	if len(lines) > 1 {
		return "", &KeyError{Msg: "sent more than once"}
	}
	s := strings.Trim(lines[0], " \t")
	if s == "" {
		return "", errNoKey
	}
	if s[0] != '"' && bare {
		if i := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == ',' || r == ';' }); i >= 0 {
			return "", &KeyError{Msg: fmt.Sprintf("an unquoted key must be visible ASCII without quotes, commas or semicolons (byte %d)", i+1)}
		}
		if len(s) > MaxKeyLen {
			return "", &KeyError{Msg: fmt.Sprintf("%d characters, at most %d allowed", len(s), MaxKeyLen)}
		}
		return s, nil
	}
	if s[0] != '"' {
		return "", &KeyError{Msg: fmt.Sprintf("must be a quoted Structured Field string, e.g. \"%s\" (idem serve --bare-keys also takes it unquoted)", clip(s))}
	}
	key, rest, err := parseString(s)
	if err != nil {
		return "", err
	}
	if err := parseParams(rest); err != nil {
		return "", err
	}
	if key == "" {
		return "", &KeyError{Msg: "empty"}
	}
	if len(key) > MaxKeyLen {
		return "", &KeyError{Msg: fmt.Sprintf("%d characters, at most %d allowed", len(key), MaxKeyLen)}
	}
	return key, nil
}

func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}

// parseString reads an sf-string at the start of s and returns the rest.
func parseString(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i == len(s) || (s[i] != '"' && s[i] != '\\') {
				return "", "", &KeyError{Msg: "bad escape in string (only \\\" and \\\\ are allowed)"}
			}
			b.WriteByte(s[i])
		case c == '"':
			return b.String(), s[i+1:], nil
		case c < 0x20 || c > 0x7e:
			return "", "", &KeyError{Msg: fmt.Sprintf("byte 0x%02x not allowed in a string", c)}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", &KeyError{Msg: "unterminated string"}
}

// parseParams checks the parameters after an Item: *( ";" *SP key [ "=" bare-item ] ).
func parseParams(s string) error {
	for s != "" {
		if s[0] != ';' {
			return &KeyError{Msg: fmt.Sprintf("unexpected %q after the key (one quoted string expected)", clip(s))}
		}
		s = strings.TrimLeft(s[1:], " ")
		n := 0
		for n < len(s) && (isLCAlpha(s[n]) || s[n] == '*' || (n > 0 && (isDigit(s[n]) || strings.IndexByte("_-.", s[n]) >= 0))) {
			n++
		}
		if n == 0 {
			return &KeyError{Msg: "bad parameter name"}
		}
		s = s[n:]
		if s == "" || s[0] != '=' {
			continue
		}
		s = s[1:]
		var err error
		if s, err = skipBareItem(s); err != nil {
			return err
		}
	}
	return nil
}

func skipBareItem(s string) (string, error) {
	bad := &KeyError{Msg: "bad parameter value"}
	if s == "" {
		return "", bad
	}
	switch c := s[0]; {
	case c == '"':
		_, rest, err := parseString(s)
		return rest, err
	case c == '?':
		if len(s) < 2 || (s[1] != '0' && s[1] != '1') {
			return "", bad
		}
		return s[2:], nil
	case c == ':':
		end := strings.IndexByte(s[1:], ':')
		if end < 0 {
			return "", bad
		}
		return s[end+2:], nil
	case c == '-' || isDigit(c):
		n := 1
		for n < len(s) && (isDigit(s[n]) || s[n] == '.') {
			n++
		}
		return s[n:], nil
	case isLCAlpha(c) || (c >= 'A' && c <= 'Z') || c == '*':
		n := 1
		for n < len(s) && s[n] > 0x20 && s[n] < 0x7f && strings.IndexByte(`"(),;<=>?@[\]{}`, s[n]) < 0 {
			n++
		}
		return s[n:], nil
	}
	return "", bad
}

func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }

// IsKeyError reports whether err is a bad Idempotency-Key.
func IsKeyError(err error) bool {
	var ke *KeyError
	return errors.As(err, &ke)
}
