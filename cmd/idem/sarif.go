package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"path/filepath"
	"unicode/utf8"

	"github.com/idemhq/idem/lint"
)

// writeSARIF writes findings as one SARIF 2.1.0 log, the format code
// scanning tools (GitHub's among them) import. Only the few fields those
// tools need are written, so a struct per object is shorter than a
// library.
// src holds each file with findings: SARIF counts columns in characters
// (columnKind unicodeCodePoints), lint in bytes.
func writeSARIF(w io.Writer, fs []lint.Finding, off map[lint.Rule]bool, src map[string][]byte) error {
	type msg struct {
		Text string `json:"text"`
	}
	type rule struct {
		ID        string `json:"id"`
		ShortDesc msg    `json:"shortDescription"`
	}
	type region struct {
		StartLine   int `json:"startLine"`
		StartColumn int `json:"startColumn"`
	}
	type artifact struct {
		URI string `json:"uri"`
	}
	type physical struct {
		Artifact artifact `json:"artifactLocation"`
		Region   region   `json:"region"`
	}
	type location struct {
		Physical physical `json:"physicalLocation"`
	}
	type result struct {
		RuleID    string     `json:"ruleId"`
		Level     string     `json:"level"`
		Message   msg        `json:"message"`
		Locations []location `json:"locations"`
	}
	rules := []rule{} // an array even when every rule is disabled
	for _, r := range lint.Rules {
		if !off[r.Rule] {
			rules = append(rules, rule{ID: string(r.Rule), ShortDesc: msg{r.Help}})
		}
	}
	results := []result{}
	for _, f := range fs {
		uri := (&url.URL{Path: filepath.ToSlash(f.Path)}).String()
		results = append(results, result{RuleID: string(f.Rule), Level: "warning", Message: msg{f.Message},
			Locations: []location{{physical{artifact{uri}, region{f.Line, charColumn(src[f.Path], f.Line, f.Col)}}}}})
	}
	log := map[string]any{
		"version": "2.1.0",
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"runs": []any{map[string]any{
			"tool":       map[string]any{"driver": map[string]any{"name": "idem", "informationUri": "https://github.com/idemhq/idem", "rules": rules}},
			"results":    results,
			"columnKind": "unicodeCodePoints",
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// charColumn turns a 1-based byte column of line into a 1-based count of
// characters (code points), as SARIF's columnKind says.
func charColumn(src []byte, line, col int) int {
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			return col
		}
		src = src[i+1:]
	}
	if col-1 > len(src) {
		return col
	}
	return utf8.RuneCount(src[:col-1]) + 1
}
