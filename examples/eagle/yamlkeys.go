package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// yamlKey is a key or sequence item of a YAML document, by its dotted path
// ("p2p.listen_addr", "seeders[1]").
type yamlKey struct {
	path  string
	line  int
	value string // the scalar value, "" for a mapping or sequence
}

// yamlKeys lists the keys and sequence items of a YAML document in
// document order, parents before children.
func yamlKeys(src []byte) []yamlKey {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil
	}
	var keys []yamlKey
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				key := yamlKey{path: p, line: k.Line}
				if v.Kind == yaml.ScalarNode {
					key.value = v.Value
				}
				keys = append(keys, key)
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				item := yamlKey{path: p, line: c.Line}
				if c.Kind == yaml.ScalarNode {
					item.value = c.Value
				}
				keys = append(keys, item)
				walk(c, p)
			}
		}
	}
	walk(&doc, "")
	return keys
}

// yamlLine matches the "line N: " that starts each of yaml.v3's type
// errors.
var yamlLine = regexp.MustCompile(`^line (\d+): `)

// nameYAMLKeys makes a decoding error of the YAML in src name the keys it
// is about, so that an operator does not have to count lines. yaml.v3
// reports a value of the wrong type by line only ("line 3: cannot
// unmarshal !!str `soon` into time.Duration"), and a value its type's
// UnmarshalText refused (a bad size or rate) with neither line nor key.
// Errors it cannot place are returned as they are.
func nameYAMLKeys(src []byte, err error) error {
	keys := yamlKeys(src)
	if len(keys) == 0 {
		return err
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, msg := range te.Errors {
			msgs[i] = msg
			m := yamlLine.FindStringSubmatch(msg)
			if m == nil {
				continue
			}
			line, _ := strconv.Atoi(m[1])
			if path := keyAtLine(keys, line, msg); path != "" {
				msgs[i] = m[0] + path + ": " + msg[len(m[0]):]
			}
		}
		return &yaml.TypeError{Errors: msgs}
	}
	// A TextUnmarshaler's error: Eagle's own types quote the value they
	// refuse. Name every key holding that value.
	text := err.Error()
	var found []string
	line := 0
	for _, k := range keys {
		if k.value != "" && strings.Contains(text, strconv.Quote(k.value)) {
			found = append(found, k.path)
			if line == 0 {
				line = k.line
			}
		}
	}
	if len(found) == 0 {
		return err
	}
	return fmt.Errorf("line %d: %s: %w", line, strings.Join(found, " or "), err)
}

// keyAtLine returns the path of the key or item on line that msg is about:
// the one whose value msg quotes, else the outermost one on that line.
func keyAtLine(keys []yamlKey, line int, msg string) string {
	first := ""
	for _, k := range keys {
		if k.line != line {
			continue
		}
		if first == "" {
			first = k.path
		}
		if k.value != "" && strings.Contains(msg, "`"+truncateYAML(k.value)+"`") {
			return k.path
		}
	}
	return first
}

// truncateYAML shortens a value the way yaml.v3 does in its type errors.
func truncateYAML(v string) string {
	if len(v) > 10 {
		return v[:7] + "..."
	}
	return v
}
