package migrations_test

import "io/fs"

func names(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, err
}

func fsReadDir(fsys fs.FS) (int, error) {
	n, err := names(fsys)
	return len(n), err
}
