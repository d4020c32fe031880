package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/kiln-build/kiln/store"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// inspectOutput is `docker image inspect`'s object (moby's
// image.InspectResponse), field for field and in its order, less what a
// daemonless store has no equivalent for (GraphDriver). ManifestDigest is
// kiln's own: the digest of the stored manifest (also in Descriptor).
type inspectOutput struct {
	ID             string `json:"Id"`
	RepoTags       []string
	RepoDigests    []string
	Parent         string
	Comment        string
	Created        string `json:",omitempty"`
	DockerVersion  string
	Author         string
	Config         *dockerspec.DockerOCIImageConfig
	Architecture   string
	Variant        string `json:",omitempty"`
	Os             string
	OsVersion      string `json:",omitempty"`
	Size           int64
	RootFS         inspectRootFS
	Metadata       inspectMetadata
	Descriptor     *ocispec.Descriptor `json:",omitempty"`
	ManifestDigest string
}

type inspectRootFS struct {
	Type   string   `json:",omitempty"`
	Layers []string `json:",omitempty"`
}

type inspectMetadata struct {
	LastTagTime time.Time `json:",omitempty"`
}

func inspectCmd() *cobra.Command {
	var format, kind string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Show container or image details as JSON",
		Long: `Show the details of containers and images like docker inspect: a JSON
array with one object per name, or with -f/--format a Go template executed
per object ("json" prints the array on one line). A name is looked up as a
container first (name, ID, unambiguous ID prefix), then as an image, unless
--type says which. Template functions: json, join, split, upper, lower,
title, pad, truncate and Go's own (println, index...). A name that matches
nothing is reported after the others ("Error: No such object: NAME") and
the exit status is 1.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if p := cmd.Parent(); p != nil && p.Name() == "image" {
				// kiln image inspect: images only, as docker's
				if kind != "" && kind != "image" {
					return fmt.Errorf("%q is not a valid value for --type", kind)
				}
				kind = "image"
			}
			switch kind {
			case "", "container", "image":
			default:
				return fmt.Errorf("%q is not a valid value for --type", kind)
			}
			return inspectMain(format, kind, size, args)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", `format output using a custom template: "json" or a Go TEMPLATE`)
	cmd.Flags().StringVar(&kind, "type", "", "return JSON for the specified type: container or image")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "display total file sizes if the type is container")
	return cmd
}

// runInspect prints the containers and images refs name like docker's
// inspect.Inspect and returns the messages for those it could not find.
// kind is "container", "image" or "" (a container first, then an image);
// size adds a container's sizes. err is a failure of the whole command
// (the store, a template that does not parse).
func runInspect(w io.Writer, format, kind string, size bool, refs []string) (failed []string, err error) {
	var tmpl *template.Template
	if format != "" && format != "json" {
		tmpl, err = template.New("").Funcs(inspectFuncs()).Parse(format)
		if err != nil {
			return nil, templateParseError{fmt.Errorf("template parsing error: %w", err)}
		}
	}
	st, err := openStore()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	sizes := st.NewLayerSizes()
	out := []any{}
	var buf bytes.Buffer
	for _, ref := range refs {
		o, err := inspectObject(st, sizes, kind, size, ref)
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		if tmpl == nil {
			out = append(out, o)
			continue
		}
		if err := executeInspectTemplate(&buf, tmpl, o); err != nil {
			failed = append(failed, err.Error())
			continue
		}
		buf.WriteByte('\n')
	}
	if tmpl != nil {
		if buf.Len() == 0 {
			buf.WriteByte('\n')
		}
		_, err := buf.WriteTo(w)
		return failed, err
	}
	var b []byte
	if format == "json" {
		b, err = json.Marshal(out)
	} else {
		b, err = json.MarshalIndent(out, "", "    ")
	}
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return failed, err
}

// inspectObject looks ref up as kind says and returns its inspect object,
// or docker's message for a name that matches nothing: "No such object"
// when it was looked up as both.
func inspectObject(st *store.Store, sizes *store.LayerSizes, kind string, size bool, ref string) (any, error) {
	var cerr error
	if kind != "image" {
		c, err := st.LookupContainer(ref)
		if err == nil {
			return inspectContainer(st, sizes, c, size)
		}
		if kind == "container" {
			return nil, err
		}
		if !errors.Is(err, store.ErrNoSuchContainer) {
			cerr = err // a damaged container must not hide an image
		}
	}
	o, err := inspectImage(st, sizes, ref)
	switch {
	case err == nil:
		return o, nil
	case cerr != nil:
		return nil, cerr
	case !strings.HasPrefix(err.Error(), "no such image: "):
		return nil, err
	case kind == "":
		return nil, errors.New("No such object: " + ref)
	}
	return nil, errors.New("No such image: " + ref)
}

// executeInspectTemplate runs tmpl on o; when that fails it runs it again
// on o's JSON decoded into maps, with missing keys an error, as docker's
// TemplateInspector does.
func executeInspectTemplate(w *bytes.Buffer, tmpl *template.Template, o any) error {
	var b bytes.Buffer
	if err := tmpl.Execute(&b, o); err == nil {
		b.WriteTo(w)
		return nil
	}
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	var m any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("unable to read inspect data: %w", err)
	}
	b.Reset()
	if err := tmpl.Option("missingkey=error").Execute(&b, m); err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	b.WriteTo(w)
	return nil
}

// inspectFuncs are docker's template functions, with join taking any
// slice (as docker/cli's joinElements does since v29): a template that
// mixes .Id with join runs on the decoded JSON, where RepoTags is []any.
func inspectFuncs() template.FuncMap {
	fm := template.FuncMap{}
	for k, v := range templateFuncs {
		fm[k] = v
	}
	fm["join"] = joinAny
	return fm
}

func joinAny(elems any, sep string) (string, error) {
	switch v := elems.(type) {
	case nil:
		return "", nil
	case []string:
		return strings.Join(v, sep), nil
	}
	rv := reflect.ValueOf(elems)
	switch rv.Kind() {
	case reflect.Array, reflect.Slice:
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(rv.Index(i).Interface())
		}
		return strings.Join(parts, sep), nil
	case reflect.Map:
		var parts []string
		for _, k := range rv.MapKeys() {
			parts = append(parts, fmt.Sprint(rv.MapIndex(k).Interface()))
		}
		sort.Strings(parts)
		return strings.Join(parts, sep), nil
	}
	return "", fmt.Errorf("expected slice, got %T", elems)
}

// templateParseError exits 64, like docker for a --format that does not
// parse.
type templateParseError struct{ error }

func (templateParseError) ExitCode() int { return 64 }

func inspectImage(st *store.Store, sizes *store.LayerSizes, ref string) (*inspectOutput, error) {
	si, err := st.LookupImage(ref)
	if err != nil {
		return nil, err
	}
	cfg := si.Config
	o := &inspectOutput{
		ID:     string(si.ID()),
		Author: cfg.Author, Config: &cfg.Config,
		Architecture: cfg.Architecture, Variant: cfg.Variant, Os: cfg.OS, OsVersion: cfg.OSVersion,
		RootFS:         inspectRootFS{Type: cfg.RootFS.Type, Layers: []string{}},
		Descriptor:     &ocispec.Descriptor{MediaType: si.ManifestDesc.MediaType, Digest: si.ManifestDesc.Digest, Size: si.ManifestDesc.Size},
		ManifestDigest: string(si.ManifestDesc.Digest),
	}
	if cfg.Created != nil {
		o.Created = cfg.Created.Format(time.RFC3339Nano)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		o.RootFS.Layers = append(o.RootFS.Layers, string(d))
	}
	// docker's image JSON keeps "comment" and "docker_version" beside the
	// OCI fields; images built by BuildKit (and kiln) have neither, and
	// docker shows the comment of the last history entry.
	var extra struct {
		Comment       string `json:"comment"`
		DockerVersion string `json:"docker_version"`
	}
	if raw, err := st.Content.ReadBlob(si.ConfigDesc.Digest); err == nil {
		_ = json.Unmarshal(raw, &extra)
	}
	o.Comment, o.DockerVersion = extra.Comment, extra.DockerVersion
	if o.Comment == "" && len(cfg.History) > 0 {
		o.Comment = cfg.History[len(cfg.History)-1].Comment
	}
	o.Size = sizes.Image(si) // layer contents, as kiln images and docker count
	if o.RepoTags, o.RepoDigests, err = st.ManifestNames(si.ManifestDesc.Digest); err != nil {
		return nil, err
	}
	return o, nil
}
