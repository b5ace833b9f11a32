"""What a controller can ask for by parameter name; `create_app` provides each one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from litestar.di import NamedDependency

from campaigns.context import Context
from campaigns.sending.lifecycle import CronParser
from campaigns.tokens import TokenSigner
from mailer.db import Database
from mailer.delivery.acknowledger import Acknowledger
from mailer.delivery.compose import Composers
from mailer.delivery.notices import Notices
from mailer.delivery.transport import SmtpTransport
from mailer.web.pages_env import Pages

if TYPE_CHECKING:
    from mailer.web.operations import Readiness

DbDep: TypeAlias = NamedDependency[Database]  # parameter `db`
CtxDep: TypeAlias = NamedDependency[Context]  # parameter `ctx`
SignerDep: TypeAlias = NamedDependency[TokenSigner]  # parameter `signer`
NoticesDep: TypeAlias = NamedDependency[Notices]  # parameter `notices`
AcknowledgerDep: TypeAlias = NamedDependency[Acknowledger]  # parameter `acknowledger`
PagesDep: TypeAlias = NamedDependency[Pages]  # parameter `pages`
ComposersDep: TypeAlias = NamedDependency[Composers]  # parameter `composers`
TransportDep: TypeAlias = NamedDependency[SmtpTransport]  # parameter `transport`
TemplatesDep: TypeAlias = NamedDependency[Path]  # parameter `templates`: templates/email/
CronParserDep: TypeAlias = NamedDependency[CronParser]  # parameter `parse_cron`
ReadinessDep: TypeAlias = NamedDependency["Readiness"]  # parameter `readiness`
