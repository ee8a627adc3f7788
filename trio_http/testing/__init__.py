"""Test helpers: real in-process trio_http servers for any test suite (see issue 5)."""
