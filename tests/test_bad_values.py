"""Hostile values for options and API arguments that parse as something else than they look: Unicode digits,
numbers past a float, sizes no allocation survives, arguments of the wrong type. Each is one line (a usage error,
exit 2, where an option's value cannot be read at all; exit 1 where the value reads but cannot run), never a
traceback or an "internal error", and nothing written."""

from __future__ import annotations

import pytest
from bad_input import refused


@pytest.mark.parametrize("command", [["summary"], ["diagram"], ["memory"], ["profile", "--device", "cpu"],
                                     ["attention", "--device", "cpu"], ["report"]], ids=lambda c: c[0])
@pytest.mark.parametrize("latent", ["²", "²x4", "4x³", "٣"])
def test_unicode_digits_are_not_a_latent_size(command, latent, tmp_path, invoke):
    """'²'.isdigit() is True yet int('²') fails: it used to end in a 48-line traceback."""
    refused(invoke, tmp_path, command[0], "tiny", *command[1:], "--latent", latent, "-o", tmp_path / "out.html",
            words="not a latent size", exit_code=2)


@pytest.mark.parametrize("query", ["²,²", "1,²", "٣,1"])
def test_unicode_digits_are_not_a_query_pixel(query, tmp_path, invoke):
    refused(invoke, tmp_path, "attention", "tiny", "--device", "cpu", "--latent", "8", "--self", "--query", query,
            words="is not a query pixel")
