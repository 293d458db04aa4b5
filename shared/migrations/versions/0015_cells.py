"""Regional cells: a registration's region, the registration mirror, what cells send home.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Every cell (the home region and each other region) runs the same migrations on its own
database; a table that is not its cell's role stays empty there (docs/architecture.md,
"Regions").

- ``platforms.region`` (owner: the registration service): the cell whose login and launch
  serve this registration (a Moodle or manual registration, chosen at registration); NULL
  means any cell (Canvas sends each school to its region's login URL; registrations made
  before cells existed).
- ``registration_mirror`` and ``registration_mirror_progress`` (owner: the registration
  mirror, run by the launch service of a cell outside the home region): the version of each
  platform's state applied to this cell's read model (``platforms`` and ``deployments``, which
  the mirror alone writes there), deletions included, so an older state replayed later never
  brings back what a newer one changed; and the last snapshot applied.
- ``cell_sightings`` (owner: the registration service, home region): the first sightings of
  deployments in the other cells (platform id, deployment id, policy, when; no personal data),
  so the admin API shows and approves held deployments wherever they launched.
- ``cell_observations`` (owner: the registration service, home region): what the other cells'
  verified launches showed about a deployment (their ``deployment_observations``, 0014: page
  origins learned, whether the LMS shared the roster and names; no personal data), per region,
  so the admin API's ``launches_show`` and ``learned_frame_origins`` cover every cell.
- ``cell_keys`` (owner: the jwks service, home region): the other cells' public tool keys, so
  the one JWKS URL publishes every key any cell signs with. Public halves only.

Safe with the previous release: a nullable column without a default and new tables; old code
names none of them.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE platforms ADD COLUMN IF NOT EXISTS region text")
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS registration_mirror (
            platform_id bigint      PRIMARY KEY,
            version     timestamptz NOT NULL,
            deleted     boolean     NOT NULL DEFAULT false
        )
        """
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS registration_mirror_progress (
            id               boolean     PRIMARY KEY DEFAULT true CHECK (id),
            snapshot_version timestamptz NOT NULL,
            applied_at       timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS cell_sightings (
            platform_id   bigint      NOT NULL,
            deployment_id text        NOT NULL,
            region        text        NOT NULL,
            policy        text        NOT NULL,
            first_seen_at timestamptz NOT NULL,
            PRIMARY KEY (platform_id, deployment_id, region)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS cell_observations (
            platform_id   bigint      NOT NULL,
            deployment_id text        NOT NULL,
            region        text        NOT NULL,
            frame_origins text[]      NOT NULL DEFAULT '{}',
            roster_shared boolean,
            names_shared  boolean,
            observed_at   timestamptz NOT NULL,
            PRIMARY KEY (platform_id, deployment_id, region)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS cell_keys (
            kid        text        PRIMARY KEY,
            region     text        NOT NULL,
            state      text        NOT NULL
                CHECK (state IN ('next', 'current', 'retired', 'removed')),
            public_key bytea       NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for table in (
        "cell_keys",
        "cell_observations",
        "cell_sightings",
        "registration_mirror_progress",
        "registration_mirror",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("ALTER TABLE platforms DROP COLUMN IF EXISTS region")
