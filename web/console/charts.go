package console

import (
	"fmt"
	"html"
	"html/template"
	"strings"

	"github.com/mdmd/mdmd"
)

// chartColors gives well-known labels a fixed, meaningful colour.
var chartColors = map[string]string{
	"compliant": "#1a7f37", "noncompliant": "#cf222e", "in_grace": "#bf8700", "not_evaluated": "#6e7781",
	"error": "#8250df", "ios": "#0969da", "android": "#2da44e",
}

// barChart draws counts as a horizontal bar chart in SVG, on the server,
// with a text alternative for screen readers. It scales to its container.
func barChart(title string, counts []mdmd.Count) template.HTML {
	var total, max int64
	for _, c := range counts {
		total += c.N
		if c.N > max {
			max = c.N
		}
	}
	const rowH, labelW, barW, numW = 28, 120, 220, 70
	h := rowH*len(counts) + 8
	if len(counts) == 0 {
		h = rowH
	}
	var alt []string
	for _, c := range counts {
		alt = append(alt, fmt.Sprintf("%s: %d", labelText(c.Label), c.N))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		labelW+barW+numW, h, html.EscapeString(title+": "+strings.Join(alt, ", ")))
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(title))
	if len(counts) == 0 {
		fmt.Fprintf(&b, `<text x="0" y="18" class="chart-label">No devices yet</text>`)
	}
	for i, c := range counts {
		y := i*rowH + 4
		w := 0
		if max > 0 {
			w = int(float64(barW) * float64(c.N) / float64(max))
		}
		if c.N > 0 && w < 2 {
			w = 2
		}
		color := chartColors[c.Label]
		if color == "" {
			color = "#57606a"
		}
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(c.N) / float64(total)
		}
		fmt.Fprintf(&b, `<text x="0" y="%d" class="chart-label">%s</text>`, y+15, html.EscapeString(labelText(c.Label)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="20" rx="3" fill="%s"/>`, labelW, y, w, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="chart-num">%d (%.0f%%)</text>`, labelW+w+6, y+15, c.N, pct)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// labelText is how a stored value is shown.
func labelText(s string) string {
	switch s {
	case "ios":
		return "iOS"
	case "android":
		return "Android"
	case "in_grace":
		return "in grace"
	case "not_evaluated":
		return "not evaluated"
	case "wipe_selective":
		return "selective wipe"
	case "wipe_full":
		return "full wipe"
	case "awaiting_approval":
		return "awaiting approval"
	case "not_now":
		return "not now"
	}
	return s
}
