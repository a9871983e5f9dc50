package cnikit_test

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// undocumented lists packages (by directory, relative to the module root) that
// still have documentation gaps. The test skips them, and fails once one has
// none left, so that the list only shrinks. Owners: document your package,
// then delete its line.
var undocumented = map[string]bool{}

// TestPackageDocs fails when a package of this module has no package doc
// comment, or when an exported identifier has no doc comment: a function, a
// method of an exported type, a type, a constant or a variable (a comment on
// a const/var/type group covers its members). Test files, testdata and nested
// modules are not looked at; package main needs its package comment only.
func TestPackageDocs(t *testing.T) {
	gaps, err := documentationGaps(".")
	if err != nil {
		t.Fatal(err)
	}
	dirs := make([]string, 0, len(gaps))
	for dir := range gaps {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		if undocumented[dir] {
			if len(gaps[dir]) == 0 {
				t.Errorf("%s is fully documented now: remove it from the undocumented list in docs_test.go", dir)
			}
			continue
		}
		for _, gap := range gaps[dir] {
			t.Errorf("%s", gap)
		}
	}
	for dir := range undocumented {
		if _, ok := gaps[dir]; !ok {
			t.Errorf("undocumented lists %s, which is not a package of this module", dir)
		}
	}
}

// documentationGaps returns, for every package directory under root, the
// documentation it lacks (an empty list when it lacks none).
func documentationGaps(root string) (map[string][]string, error) {
	gaps := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		if path != root {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		dirGaps, isPackage, err := packageGaps(path)
		if err != nil {
			return err
		}
		if isPackage {
			gaps[filepath.ToSlash(path)] = dirGaps
		}
		return nil
	})
	return gaps, err
}

// packageGaps checks the non-test Go files of one directory.
func packageGaps(dir string) (gaps []string, isPackage bool, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		path := filepath.Join(dir, name)
		if generated, err := isGenerated(path); err != nil || generated {
			if err != nil {
				return nil, false, err
			}
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, false, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, false, nil
	}
	hasPackageDoc := false
	for _, f := range files {
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			hasPackageDoc = true
		}
	}
	pkgName := files[0].Name.Name
	if !hasPackageDoc {
		gaps = append(gaps, fmt.Sprintf("%s: package %s has no package doc comment", dir, pkgName))
	}
	if pkgName == "main" {
		return gaps, true, nil
	}
	exportedTypes := map[string]bool{}
	for _, f := range files {
		for _, decl := range f.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, spec := range gd.Specs {
					if ts := spec.(*ast.TypeSpec); ts.Name.IsExported() {
						exportedTypes[ts.Name.Name] = true
					}
				}
			}
		}
	}
	for _, f := range files {
		for _, decl := range f.Decls {
			gaps = append(gaps, declGaps(fset, decl, exportedTypes)...)
		}
	}
	return gaps, true, nil
}

func declGaps(fset *token.FileSet, decl ast.Decl, exportedTypes map[string]bool) []string {
	missing := func(pos token.Pos, what string) string {
		p := fset.Position(pos)
		return fmt.Sprintf("%s:%d: %s has no doc comment", filepath.ToSlash(p.Filename), p.Line, what)
	}
	var gaps []string
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() || hasDoc(d.Doc) {
			return nil
		}
		if d.Recv == nil {
			return []string{missing(d.Pos(), "func "+d.Name.Name)}
		}
		if recv := receiverType(d.Recv); exportedTypes[recv] {
			return []string{missing(d.Pos(), "method "+recv+"."+d.Name.Name)}
		}
	case *ast.GenDecl:
		if d.Tok == token.IMPORT || hasDoc(d.Doc) {
			return nil
		}
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() && !hasDoc(s.Doc) {
					gaps = append(gaps, missing(s.Pos(), "type "+s.Name.Name))
				}
			case *ast.ValueSpec:
				if hasDoc(s.Doc) {
					continue
				}
				for _, n := range s.Names {
					if n.IsExported() {
						gaps = append(gaps, missing(n.Pos(), d.Tok.String()+" "+n.Name))
					}
				}
			}
		}
	}
	return gaps
}

func hasDoc(g *ast.CommentGroup) bool { return g != nil && strings.TrimSpace(g.Text()) != "" }

// receiverType returns the name of a method's receiver type, without pointer
// or type parameters.
func receiverType(recv *ast.FieldList) string {
	expr := recv.List[0].Type
	for {
		switch e := expr.(type) {
		case *ast.StarExpr:
			expr = e.X
		case *ast.IndexExpr:
			expr = e.X
		case *ast.IndexListExpr:
			expr = e.X
		case *ast.Ident:
			return e.Name
		default:
			return ""
		}
	}
}

// isGenerated reports whether the file carries the standard "Code generated
// ... DO NOT EDIT." line before its package clause.
func isGenerated(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "package ") {
			return false, nil
		}
		if strings.HasPrefix(line, "// Code generated ") && strings.HasSuffix(line, " DO NOT EDIT.") {
			return true, nil
		}
	}
	return false, sc.Err()
}

// TestDocumentationGapsFinds checks the checker on a package written for it.
func TestDocumentationGapsFinds(t *testing.T) {
	dir := t.TempDir()
	pkg := filepath.Join(dir, "sample")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	src := `package sample

import "fmt"

// Documented is fine.
func Documented() {}

func Bare() {}

func unexported() {}

// Kind is documented.
type Kind int

type Naked struct{}

type hidden struct{}

func (Kind) Method() {}

// Doc is fine.
func (Kind) Doc() {}

func (hidden) Exported() {}

// Group comments cover their members.
const (
	A = 1
	B = 2
)

const (
	// C has its own.
	C = 3
	D = 4
	e = 5
)

var V, W = fmt.Sprint(1), 2
`
	if err := os.WriteFile(filepath.Join(pkg, "sample.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "sample_test.go"), []byte("package sample\n\nfunc TestLike() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gen := "// Code generated by hand. DO NOT EDIT.\n\npackage sample\n\nfunc Generated() {}\n"
	if err := os.WriteFile(filepath.Join(pkg, "zz_generated.go"), []byte(gen), 0o644); err != nil {
		t.Fatal(err)
	}
	nested := filepath.Join(dir, "nested")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(nested, "go.mod"), []byte("module nested\n"), 0o644)
	os.WriteFile(filepath.Join(nested, "n.go"), []byte("package nested\n\nfunc Bare() {}\n"), 0o644)

	gaps, err := documentationGaps(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range gaps[filepath.ToSlash(pkg)] {
		got = append(got, g[strings.LastIndex(g, ": ")+2:])
	}
	want := []string{
		"package sample has no package doc comment",
		"func Bare has no doc comment",
		"type Naked has no doc comment",
		"method Kind.Method has no doc comment",
		"const D has no doc comment",
		"var V has no doc comment",
		"var W has no doc comment",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("gaps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, ok := gaps[filepath.ToSlash(nested)]; ok {
		t.Error("a nested module was checked")
	}
	if len(gaps) != 1 {
		t.Errorf("packages found: %v", gaps)
	}
}
