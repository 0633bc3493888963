"""The chat webhooks the gateway serves, and the workers that finish their questions later.

A webhook runs when its platform's secrets are set, and answers with the
assistant as the tenant of `webhook_credential`. Two workers shared by the
replicas finish what a webhook could not at once: `chat_later` asks the
assistant again once it can, and `escalation_replies` sends a person's
answer to an escalated question through the platform.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgegate_common.bus import Bus
from edgegate_gateway.adapters.chat_later import ChatLater
from edgegate_gateway.adapters.discord import DiscordInteractions, DiscordSettings
from edgegate_gateway.adapters.escalation_replies import EscalationReplies
from edgegate_gateway.adapters.slack import SlackEvents, SlackSettings
from edgegate_gateway.adapters.telegram import TelegramSettings, TelegramWebhook
from edgegate_gateway.adapters.webhook_events import EventClaims
from edgegate_gateway.adapters.whatsapp import WhatsAppSettings, WhatsAppWebhook
from edgegate_gateway.assistant import Assistant
from edgegate_gateway.config import GatewaySettings

Webhook = TelegramWebhook | SlackEvents | DiscordInteractions | WhatsAppWebhook


@dataclass(frozen=True, slots=True)
class Chats:
    """The chat webhooks, and the workers that answer their questions later: kept questions
    (`chat_later`) and people's answers to escalated ones (`escalation_replies`)."""

    webhooks: list[Webhook]
    later: ChatLater | None = None
    replies: EscalationReplies | None = None

    async def close(self) -> None:
        if self.replies is not None:
            await self.replies.close()
        if self.later is not None:
            await self.later.close()
        for webhook in self.webhooks:
            await webhook.close()


async def start_chats(s: GatewaySettings, bus: Bus, assistant: Assistant | None) -> Chats:
    """The chat webhooks whose secrets are set (they answer with the assistant)."""
    if assistant is None or s.webhook_credential is None:
        return Chats([])
    credential = s.webhook_credential.get_secret_value()
    events = await EventClaims.open(bus.js)
    later = await ChatLater.open(bus.js, events)
    webhooks: list[Webhook] = []
    if s.telegram_secret_token and s.telegram_bot_token:
        settings = TelegramSettings(
            secret_token=s.telegram_secret_token.get_secret_value(),
            bot_token=s.telegram_bot_token.get_secret_value(),
            credential=credential,
            api_base=s.telegram_api_base,
        )
        webhooks.append(TelegramWebhook(settings, assistant=assistant, events=events, later=later))
    if s.slack_signing_secret and s.slack_bot_token:
        slack = SlackSettings(
            signing_secret=s.slack_signing_secret.get_secret_value(),
            bot_token=s.slack_bot_token.get_secret_value(),
            credential=credential,
            api_base=s.slack_api_base,
        )
        webhooks.append(SlackEvents(slack, assistant=assistant, events=events, later=later))
    if s.whatsapp_app_secret and s.whatsapp_verify_token and s.whatsapp_access_token:
        whatsapp = WhatsAppSettings(
            app_secret=s.whatsapp_app_secret.get_secret_value(),
            verify_token=s.whatsapp_verify_token.get_secret_value(),
            access_token=s.whatsapp_access_token.get_secret_value(),
            credential=credential,
            api_base=s.whatsapp_api_base,
        )
        webhooks.append(WhatsAppWebhook(whatsapp, assistant=assistant, events=events, later=later))
    if s.discord_public_key:
        discord = DiscordSettings(
            public_key_hex=s.discord_public_key, credential=credential, api_base=s.discord_api_base
        )
        webhooks.append(
            DiscordInteractions(discord, assistant=assistant, events=events, later=later)
        )
    later.start({w.platform: w.answerer() for w in webhooks})
    if not webhooks:
        return Chats(webhooks, later)
    replies = EscalationReplies(bus.js, events)
    replies.start({w.channel: w for w in webhooks})
    return Chats(webhooks, later, replies)
