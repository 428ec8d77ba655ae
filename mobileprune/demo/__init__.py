"""The end-to-end demo (``mobileprune demo``) and the small digits task it runs on."""
