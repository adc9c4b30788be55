"""A submodule that imports Pillow, which the project does not declare."""

from PIL import Image

import undeclared_pkg

BLANK = Image.new("L", (1, 1))
PACKAGE = undeclared_pkg.__name__
