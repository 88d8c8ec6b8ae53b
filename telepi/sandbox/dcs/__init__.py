"""Data centres and the CDN (https://core.telegram.org/api/datacenter, https://core.telegram.org/cdn)."""
