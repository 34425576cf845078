"""Put the user project's scripts (project/scripts) on the import path, so the
harness reuses their converters and helpers instead of copying them. Import it
before `from train import ...` and the like."""
import sys
from pathlib import Path

PROJECT_SCRIPTS = Path(__file__).resolve().parents[2] / "project" / "scripts"

if str(PROJECT_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(PROJECT_SCRIPTS))
