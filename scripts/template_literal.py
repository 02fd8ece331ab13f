"""The prior templates' Python literal (models/cavity.py CAVITY_TEMPLATES, models/eyelids.py LID_TEMPLATES),
as scripts/cavity_stats.py and scripts/eyelid_stats.py print them for pasting into the module."""


def print_templates(name: str, bands) -> None:
    """Print ``NAME = ((key, (rows...)), ...)`` for ``bands``: ``(key, comment, table)`` with ``table`` rows of
    R G B cells; each band's line carries its key and ``# comment``."""
    print(f"{name} = (")
    for key, comment, table in bands:
        print(f"    ({key:.3f}, (  # {comment}")
        for row in table:
            print("        (" + ", ".join("(" + ", ".join(f"{c:.2f}" for c in cell) + ")" for cell in row) + "),")
        print("    )),")
    print(")")
