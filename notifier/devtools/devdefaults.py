"""What ``notifier dev`` sets that ``notifier run`` never does: the secrets that sign
feed and tracking links, its own URL for links, and the two demo shops' branding.

The secrets are generated once and kept in the dev data directory
(``.notifier-dev/dev-secrets.json``, readable by its owner only), so a tracking link in
a caught email or a feed page left open still works after ``notifier dev`` restarts.
A value the environment gives (``NOTIFIER_FEED_SECRET=…``) always wins, and a default
is passed only for a setting this build has: features arrive one at a time, and an
unknown one would be refused.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from notifier.config import Settings

#: the demo's two shops, in the ``NOTIFIER_STORES_FILE`` format
DEMO_STORES_FILE = Path(__file__).resolve().with_name("demo-stores.yaml")
#: where the dev secrets live, inside the dev data directory
SECRETS_FILE = "dev-secrets.json"
#: the secrets ``notifier dev`` keeps (settings field names)
SECRET_FIELDS = ("feed_secret", "track_secret")


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """The dev secrets from ``data_dir``, made (and written, mode 0600) where missing.

    A file that is not a JSON object of strings is replaced: these secrets sign only
    links to a local dev server.
    """
    path = data_dir / SECRETS_FILE
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    if not isinstance(kept, dict):
        kept = {}
    found = {k: v for k, v in kept.items() if k in SECRET_FIELDS and isinstance(v, str) and v}
    if len(found) < len(SECRET_FIELDS):
        found = {name: found.get(name) or secrets.token_urlsafe(32) for name in SECRET_FIELDS}
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(found, out)
    return found


def dev_defaults(
    data_dir: Path, base_url: str, *, environ: Mapping[str, str] = os.environ
) -> dict[str, object]:
    """Settings overrides for ``notifier dev``: each one this build's ``Settings`` has
    and the environment leaves unset (``NOTIFIER_<FIELD>``)."""
    wanted: dict[str, object] = {
        **dev_secrets(data_dir),
        "public_base_url": base_url,
        "stores_file": DEMO_STORES_FILE,
        # the demo's slow parcel is predicted from history it brings itself
        "prediction_refresh_s": 5.0,
    }
    given = {name.upper() for name in environ}
    return {
        field: value
        for field, value in wanted.items()
        if field in Settings.model_fields and f"NOTIFIER_{field.upper()}" not in given
    }
