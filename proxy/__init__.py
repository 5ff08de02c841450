"""The OpenAI/Anthropic-compatible proxy (`/v1/*`): see issue "Virtual keys, provider credentials and the proxy"."""
