package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// decodeYAML decodes raw strictly (unknown options are errors) into c. An
// empty file leaves c as it is. Errors carry the option path beside each
// line number, e.g. "line 8 (shutdown_grace): ...".
func decodeYAML(raw []byte, c *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	paths := map[int]string{}
	linePaths(&root, "", paths)
	return errors.New(lineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if p, ok := paths[n]; ok {
			return fmt.Sprintf("line %d (%s)", n, p)
		}
		return m
	}))
}

var lineRE = regexp.MustCompile(`line (\d+)`)

// linePaths records, for each line holding a mapping key, the option path
// of that key.
func linePaths(n *yaml.Node, prefix string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			linePaths(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			out[k.Line] = p
			if v.Line != k.Line {
				out[v.Line] = p
			}
			linePaths(v, p, out)
		}
	}
}
