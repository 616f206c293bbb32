package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/mdmd/mdmd"
)

// decodeJSON reads exactly one JSON object into v. Unknown fields, trailing
// data, a wrong media type and an oversized body are errors that name the
// problem; nothing is read past the body limit.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return mdmd.Errorf(mdmd.EUnsupported, "Content-Type must be application/json, got %q", ct)
		}
	}
	return decodeJSONFrom(r.Body, v)
}

// DecodeJSONBytes decodes a body already read (and authenticated) as
// DecodeJSON does.
func DecodeJSONBytes(b []byte, v any) error { return decodeJSONFrom(bytes.NewReader(b), v) }

func decodeJSONFrom(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err != nil {
			if te := jsonError(err); mdmd.IsCode(te, mdmd.ETooLarge) {
				return te
			}
		}
		return mdmd.Errorf(mdmd.EInvalid, "request body must hold a single JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return mdmd.Errorf(mdmd.ETooLarge, "request body exceeds %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return mdmd.Errorf(mdmd.EInvalid, "request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return mdmd.Errorf(mdmd.EInvalid, "malformed JSON: unexpected end of body")
	case errors.As(err, &syn):
		return mdmd.Errorf(mdmd.EInvalid, "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return mdmd.FieldError(typ.Field, "must be a JSON %s, got %s", typ.Type.Kind(), typ.Value)
		}
		return mdmd.Errorf(mdmd.EInvalid, "request body must be a JSON object, got %s", typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return mdmd.Errorf(mdmd.EInvalid, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return mdmd.Errorf(mdmd.EInvalid, "malformed JSON: %v", fmt.Sprint(err))
}
