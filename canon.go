package idem

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Canonical text forms. Every value idem writes, compares or hashes is first
// brought into one text form per type, so that the same logical value is the
// same bytes whichever backend stored it:
//
//	integer, numeric  plain decimal, no exponent, no leading zeros, no trailing
//	                  fractional zeros, no "+", "-0" is "0": "1.50" -> "1.5"
//	boolean           "true" or "false"
//	date              "2006-01-02"
//	timestamp         UTC, "2006-01-02T15:04:05.999999Z" (microseconds, as
//	                  PostgreSQL keeps them; a value without a zone is UTC)
//	text              the string itself (valid UTF-8, no NUL)
//
// NULL is not a text form: it is Value.Null, distinct from "".

const maxNumericDigits = 1000

var errNotNumber = errors.New("is not a number")

// Canon parses raw input text as type t and returns its canonical form. The
// error says what is wrong without position; callers add it.
func Canon(t Type, s string) (string, error) {
	switch t {
	case TypeText:
		if strings.IndexByte(s, 0) >= 0 {
			return "", errors.New("text contains a NUL byte")
		}
		return s, nil
	case TypeInteger:
		if isCanonInteger(s) {
			return s, nil
		}
		return canonInteger(strings.TrimSpace(s))
	case TypeNumeric:
		if isCanonNumeric(s) {
			return s, nil
		}
		return canonNumeric(strings.TrimSpace(s))
	case TypeBoolean:
		return canonBool(strings.TrimSpace(s))
	case TypeDate:
		if isCanonDate(s) {
			return s, nil
		}
		return canonDate(strings.TrimSpace(s))
	case TypeTimestamp:
		return canonTimestamp(strings.TrimSpace(s))
	}
	return "", errors.New("unknown type")
}

// The isCanon* checks recognise input that is already canonical, the
// common case, so it is returned as is without parsing into time.Time or
// rebuilding strings: they decide the load's CPU cost per value.

// isCanonInteger: a canonical integer short enough to be inside int64
// whatever its digits.
func isCanonInteger(s string) bool {
	return len(strings.TrimPrefix(s, "-")) <= 18 && isCanonIntDigits(s)
}

// isCanonNumeric: a canonical integer part, optionally "." and digits not
// ending in zero, "-0..." excluded.
func isCanonNumeric(s string) bool {
	ip, fp, dot := strings.Cut(s, ".")
	if !dot {
		return len(ip) <= maxNumericDigits && isCanonIntDigits(ip)
	}
	if fp == "" || fp[len(fp)-1] == '0' || len(ip)+len(fp) > maxNumericDigits || !isCanonIntDigits(ip) {
		return false
	}
	for i := 0; i < len(fp); i++ {
		if fp[i] < '0' || fp[i] > '9' {
			return false
		}
	}
	// "-0.5" is canonical, "-0" is not (and has no dot).
	return true
}

func isCanonIntDigits(s string) bool {
	d := s
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || (d[0] == '0' && len(d) > 1) {
		return false
	}
	if s == "-0" {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}

var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// isCanonDate: YYYY-MM-DD naming a real day (February 29 only in leap
// years).
func isCanonDate(s string) bool {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	n := 0
	for _, i := range [8]int{0, 1, 2, 3, 5, 6, 8, 9} {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	y, m, d := n/10000, n/100%100, n%100
	if y == 0 || m < 1 || m > 12 || d < 1 || d > daysIn[m] {
		return false
	}
	if m == 2 && d == 29 && (y%4 != 0 || (y%100 == 0 && y%400 != 0)) {
		return false
	}
	return true
}

func canonInteger(s string) (string, error) {
	if s == "" {
		return "", errors.New("is not an integer")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return "", errors.New("is out of range for a 64-bit integer")
		}
		return "", errors.New("is not an integer")
	}
	return strconv.FormatInt(n, 10), nil
}

// canonNumeric normalises a decimal literal without going through float, so
// that no digit is ever lost.
func canonNumeric(s string) (string, error) {
	if s == "" {
		return "", errNotNumber
	}
	neg := false
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		neg = true
		s = s[1:]
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > maxNumericDigits || e < -maxNumericDigits {
			return "", errNotNumber
		}
		exp = e
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	if intPart == "" && frac == "" || len(mant) > 2*maxNumericDigits+2 {
		return "", errNotNumber
	}
	for _, p := range [2]string{intPart, frac} {
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return "", errNotNumber
			}
		}
	}
	// Shift the decimal point by the exponent.
	digits := intPart + frac
	point := len(intPart) + exp
	if point < 0 {
		digits = strings.Repeat("0", -point) + digits
		point = 0
	} else if point > len(digits) {
		digits += strings.Repeat("0", point-len(digits))
	}
	ip := strings.TrimLeft(digits[:point], "0")
	fp := strings.TrimRight(digits[point:], "0")
	if len(ip)+len(fp) > maxNumericDigits {
		// Bounded so that every canonical form is itself valid input.
		return "", fmt.Errorf("has more than %d digits", maxNumericDigits)
	}
	if ip == "" {
		ip = "0"
	}
	out := ip
	if fp != "" {
		out += "." + fp
	}
	if neg && out != "0" {
		out = "-" + out
	}
	return out, nil
}

func canonBool(s string) (string, error) {
	switch strings.ToLower(s) {
	case "t", "true", "y", "yes", "on", "1":
		return "true", nil
	case "f", "false", "n", "no", "off", "0":
		return "false", nil
	}
	return "", errors.New("is not a boolean")
}

const (
	dateLayout = "2006-01-02"
	tsLayout   = "2006-01-02T15:04:05.999999Z"
)

func canonDate(s string) (string, error) {
	if len(s) != 10 {
		return "", errors.New("is not a date (want YYYY-MM-DD)")
	}
	d, err := time.Parse(dateLayout, s)
	if err != nil {
		return "", errors.New("is not a date (want YYYY-MM-DD)")
	}
	return d.Format(dateLayout), nil
}

// Timestamp layouts accepted on input, tried in order. The ones without a zone
// are read as UTC: pipelines should pass execution times explicitly.
var tsInLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04Z07:00",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
}

// ParseTimestamp reads any accepted timestamp form. A bare date is its
// midnight UTC, as PostgreSQL reads it, so a column of dates and timestamps
// infers as timestamp.
func ParseTimestamp(s string) (time.Time, error) {
	if len(s) == 10 {
		if t, err := time.Parse(dateLayout, s); err == nil {
			return t, nil
		}
	}
	if len(s) < 16 || len(s) > 40 {
		return time.Time{}, errors.New("is not a timestamp")
	}
	for _, l := range tsInLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("is not a timestamp")
}

func canonTimestamp(s string) (string, error) {
	t, err := ParseTimestamp(s)
	if err != nil {
		return "", err
	}
	return FormatTimestamp(t), nil
}

// FormatTimestamp renders t canonically, rounded to microseconds as
// PostgreSQL rounds its input: it reads the fraction as a double and
// rounds frac*1e6 half to even (rint), so .0000005 becomes .000000 and
// .0000015 .000002. Go's Round would take both ties up.
func FormatTimestamp(t time.Time) string {
	t = t.UTC()
	if ns := t.Nanosecond(); ns%1000 != 0 {
		us := math.RoundToEven(float64(ns) / 1e9 * 1e6)
		t = t.Truncate(time.Second).Add(time.Duration(us) * time.Microsecond)
	}
	return t.Format(tsLayout)
}

// plainNumber: s is written as a number is, not as a code that happens to
// be digits. Leading zeros (zip codes, account numbers: "02134"), a "+"
// or spaces around it would be lost in a numeric column, so a column
// holding them is inferred as text. Loading into an existing numeric
// column still accepts them (Canon).
func plainNumber(s string) bool {
	if s == "" || s != strings.TrimSpace(s) || s[0] == '+' {
		return false
	}
	d := strings.TrimPrefix(s, "-")
	return !(len(d) > 1 && d[0] == '0' && d[1] >= '0' && d[1] <= '9')
}

// inference order: the first type in this list that accepts every sampled
// value wins; integer widens to numeric, date widens to timestamp.
func fits(t Type, s string) bool {
	var err error
	switch t {
	case TypeInteger, TypeNumeric:
		if !plainNumber(s) {
			return false
		}
		if t == TypeInteger {
			_, err = canonInteger(s)
			break
		}
		_, err = canonNumeric(s)
		if err == nil && strings.ContainsAny(s, "eE") {
			// "1e3" is a number, but a column of codes like "12E4" is text
			// far more often than it is scientific notation.
			return false
		}
	case TypeBoolean:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "false", "t", "f":
			return true
		}
		return false
	case TypeDate:
		_, err = canonDate(strings.TrimSpace(s))
	case TypeTimestamp:
		_, err = canonTimestamp(strings.TrimSpace(s))
	}
	return err == nil
}

// Inferrer guesses column types from sample values.
type Inferrer struct {
	cand []uint8 // bitset of still-possible types per column
	seen []bool
}

const allCandidates = 1<<TypeInteger | 1<<TypeNumeric | 1<<TypeBoolean | 1<<TypeDate | 1<<TypeTimestamp

// NewInferrer starts inference for n columns.
func NewInferrer(n int) *Inferrer {
	in := &Inferrer{cand: make([]uint8, n), seen: make([]bool, n)}
	for i := range in.cand {
		in.cand[i] = allCandidates
	}
	return in
}

// Observe narrows the candidate types by one record.
func (in *Inferrer) Observe(rec []Value) {
	for i, v := range rec {
		if i >= len(in.cand) || v.Null {
			continue
		}
		in.seen[i] = true
		c := in.cand[i]
		for t := TypeInteger; t <= TypeTimestamp; t++ {
			if c&(1<<t) != 0 && !fits(t, v.S) {
				c &^= 1 << t
			}
		}
		in.cand[i] = c
	}
}

// Types returns the inferred type of each column. A column with no non-NULL
// sample is text.
func (in *Inferrer) Types() []Type {
	out := make([]Type, len(in.cand))
	for i, c := range in.cand {
		out[i] = TypeText
		if !in.seen[i] {
			continue
		}
		for _, t := range []Type{TypeInteger, TypeNumeric, TypeBoolean, TypeDate, TypeTimestamp} {
			if c&(1<<t) != 0 {
				out[i] = t
				break
			}
		}
	}
	return out
}
