package main

import "testing"

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{
		"/var/www/shop/img/p/1.jpg": "/var/www/shop/img/p/1.jpg",
		"/shop/café.jpg":            "/shop/café.jpg",
		"/shop/caf\xe9.jpg":         `"/shop/caf\xe9.jpg"`,
		"/shop/\x1b[31mred":         `"/shop/\x1b[31mred"`,
		"/shop/a\nb":                `"/shop/a\nb"`,
	} {
		if got := displayName(in); got != want {
			t.Errorf("displayName(%q) = %s, want %s", in, got, want)
		}
	}
}
