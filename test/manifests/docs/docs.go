// Package docs checks the repository's Markdown files: no line longer than MaxLine characters (a reader on
// GitHub scrolls sideways past it, a diff shows one changed line for a paragraph) and every relative link,
// with its #anchor, resolving to a file of the checkout (a page moved or a heading renamed breaks it); and
// every documented `flux bootstrap github` giving its deploy key write access (image automation pushes).
package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLine is the longest line, in characters, a Markdown file may have.
const MaxLine = 400

// Problem is one finding: a file (relative to the root), a line (1-based) and what is wrong.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Files lists the Markdown files of the checkout at root that git tracks or would track (ignored files, such
// as make bench's bench-results/, are left out), as slash-separated paths relative to root.
func Files(root string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.md")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s (the check lists the checkout's Markdown files with git: install git, run it in a clone): %w", root, err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" {
			continue
		}
		// A file listed by the index but deleted in the working tree is not there to check.
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			files = append(files, f)
		}
	}
	sort.Strings(files)
	return files, nil
}

// Check reads files (relative to root) and returns every line over MaxLine characters and every relative
// link whose file or anchor does not exist.
func Check(root string, files []string) ([]Problem, error) {
	var out []Problem
	anchors := map[string]map[string]bool{} // by file, read when first linked to
	anchorsOf := func(file string) (map[string]bool, error) {
		if a, ok := anchors[file]; ok {
			return a, nil
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			return nil, err
		}
		anchors[file] = Anchors(b)
		return anchors[file], nil
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		lines := scan(b)
		out = append(out, bootstrapKeys(f, lines)...)
		for _, l := range lines {
			if n := utf8.RuneCountInString(l.text); n > MaxLine {
				out = append(out, Problem{f, l.n, fmt.Sprintf("line of %d characters, more than %d: wrap it (a table row too long for one line belongs in a list)", n, MaxLine)})
			}
			if l.code {
				continue
			}
			for _, target := range Links(l.text) {
				if msg := resolve(root, f, target, anchorsOf); msg != "" {
					out = append(out, Problem{f, l.n, msg})
				}
			}
		}
	}
	return out, nil
}

// bootstrapKeys returns every `flux bootstrap github` command of a code block (continuation lines joined)
// that lacks --read-write-key: image automation pushes commits, and the deploy key bootstrap creates
// without it is read-only, so every release would stop at the push.
func bootstrapKeys(file string, lines []line) []Problem {
	var out []Problem
	for i := 0; i < len(lines); i++ {
		if !lines[i].code || !strings.Contains(lines[i].text, "flux bootstrap github") {
			continue
		}
		cmd, j := lines[i].text, i
		for strings.HasSuffix(strings.TrimSpace(lines[j].text), `\`) && j+1 < len(lines) && lines[j+1].code {
			j++
			cmd += " " + lines[j].text
		}
		if !strings.Contains(cmd, "--read-write-key") {
			out = append(out, Problem{file, lines[i].n, "flux bootstrap github without --read-write-key: image " +
				"automation pushes commits, and the deploy key bootstrap creates without it is read-only"})
		}
		i = j
	}
	return out
}

// resolve returns why a link target of file does not resolve ("" when it does or is not relative).
func resolve(root, file, target string, anchorsOf func(string) (map[string]bool, error)) string {
	if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return ""
	}
	p, frag, _ := strings.Cut(target, "#")
	p, _, _ = strings.Cut(p, "?")
	dest := file
	if p != "" {
		if strings.HasPrefix(p, "/") { // GitHub resolves a leading slash against the repository root
			dest = path.Clean(strings.TrimPrefix(p, "/"))
		} else {
			dest = path.Join(path.Dir(file), p)
		}
		if dest == ".." || strings.HasPrefix(dest, "../") {
			return fmt.Sprintf("link %s leaves the repository", target)
		}
		st, err := os.Stat(filepath.Join(root, filepath.FromSlash(dest)))
		if err != nil {
			return fmt.Sprintf("link %s: %s does not exist", target, dest)
		}
		if st.IsDir() || frag == "" {
			return ""
		}
	}
	if frag == "" || !strings.HasSuffix(dest, ".md") {
		return ""
	}
	a, err := anchorsOf(dest)
	if err != nil {
		return fmt.Sprintf("link %s: %v", target, err)
	}
	if !a[strings.ToLower(frag)] {
		return fmt.Sprintf("link %s: %s has no heading or anchor #%s", target, dest, frag)
	}
	return ""
}

type line struct {
	n    int
	text string
	code bool // inside a fenced code block (its links are text, not links)
}

func scan(b []byte) []line {
	var out []line
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	fence := ""
	for n := 1; sc.Scan(); n++ {
		t := sc.Text()
		trimmed := strings.TrimLeft(t, " ")
		inCode := fence != ""
		switch {
		case fence == "" && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence = trimmed[:3]
			inCode = true
		case fence != "" && strings.HasPrefix(trimmed, fence):
			fence = ""
		}
		out = append(out, line{n, t, inCode})
	}
	return out
}

var (
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	inlineLink = regexp.MustCompile(`\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+"[^"]*")?\s*\)`)
	refDef     = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	htmlHref   = regexp.MustCompile(`<a\s[^>]*href="([^"]*)"`)
)

// Links returns the targets of the inline links and images, reference definitions and HTML anchors of one
// line of Markdown, outside code spans.
func Links(text string) []string {
	text = codeSpan.ReplaceAllString(text, "``")
	var out []string
	for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
		out = append(out, strings.Trim(m[1], "<>"))
	}
	if m := refDef.FindStringSubmatch(text); m != nil {
		out = append(out, strings.Trim(m[1], "<>"))
	}
	for _, m := range htmlHref.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

var htmlAnchor = regexp.MustCompile(`<a\s[^>]*(?:id|name)="([^"]+)"`)

// Anchors returns the fragment identifiers a Markdown file defines: GitHub's slug of each heading (numbered
// -1, -2 … when repeated) and the id or name of each HTML anchor.
func Anchors(b []byte) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range scan(b) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(l.text, -1) {
			out[strings.ToLower(m[1])] = true
		}
		if l.code {
			continue
		}
		t := strings.TrimLeft(l.text, " ")
		h := strings.TrimLeft(t, "#")
		if len(t)-len(h) < 1 || len(t)-len(h) > 6 || (h != "" && h[0] != ' ') {
			continue
		}
		s := Slug(strings.TrimRight(strings.TrimSpace(h), "#"))
		if k := seen[s]; k > 0 {
			out[fmt.Sprintf("%s-%d", s, k)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

var mdLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// Slug is GitHub's anchor for a heading: the text of its links kept, lower-cased, everything but letters,
// digits, spaces, hyphens and underscores dropped, spaces turned into hyphens.
func Slug(heading string) string {
	heading = mdLink.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
