"""reputation counts under one spelling of each receiving domain: A-labels

Before, a report counted an internationalised domain as the contact wrote it (`bücher.be`)
and a handoff as RCPT TO carried it (`xn--bcher-kva.be`): one domain in two rows, each under
the guard's per-domain limit. The rows of a domain are added together under its A-labels, and
a per-domain limit a marketer resumed past (`guard_tripped`) is named the same way.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 03:00:00.000000
"""

from collections.abc import Sequence

import idna
import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("messages", "delivered", "hard_bounces", "soft_bounces", "blocks", "complaints")
COUNTS = sa.table(
    "run_domain_count", sa.column("run_id"), sa.column("domain"), *map(sa.column, FIELDS)
)
RUN = sa.table("campaign_run", sa.column("id"), sa.column("guard_tripped"))


def a_labels(domain: str) -> str:
    """What campaigns.returns.reputation.domain_of makes of a domain from now on, written out
    here: a migration keeps doing what it did when it was written."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")[:253]
    except UnicodeError:  # IDNA 2008 refuses it: it stays as written
        return domain


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(COUNTS)).mappings().all()
    for row in rows:
        domain = a_labels(row["domain"])
        if domain == row["domain"]:
            continue
        this = (COUNTS.c.run_id == row["run_id"]) & (COUNTS.c.domain == row["domain"])
        other = (COUNTS.c.run_id == row["run_id"]) & (COUNTS.c.domain == domain)
        if bind.execute(sa.select(COUNTS.c.run_id).where(other)).first() is None:
            bind.execute(sa.update(COUNTS).where(this).values(domain=domain))
            continue
        bind.execute(
            sa.update(COUNTS).where(other).values({f: COUNTS.c[f] + row[f] for f in FIELDS})
        )
        bind.execute(sa.delete(COUNTS).where(this))
    tripped = bind.execute(
        sa.select(RUN.c.id, RUN.c.guard_tripped).where(RUN.c.guard_tripped.like("%blocks:%"))
    ).all()
    for run_id, keys in tripped:
        renamed = sorted(
            {
                f"blocks:{a_labels(k[len('blocks:'):])}" if k.startswith("blocks:") else k
                for k in keys.split(",")
                if k
            }
        )
        bind.execute(
            sa.update(RUN).where(RUN.c.id == run_id).values(guard_tripped=",".join(renamed)[:500])
        )


def downgrade() -> None:
    pass  # the A-labels name the same domains: nothing to undo
