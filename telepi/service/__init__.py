"""What the process needs to behave as a service: sd_notify, the health-checked watchdog, journald logs."""
