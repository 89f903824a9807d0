"""Where tests find things: the repository and the shared reference material next to it."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# CI checks the repository out as a sibling of shared/ (reference data used in place, never copied in).
SHARED = (REPO / ".." / "shared").resolve()
REFERENCE = SHARED / "reference"
AUOMS_REF = REFERENCE / "auoms"
SAMPLES = SHARED / "samples"
