"""LTI 1.3 Advantage: the service as a tool inside a school's LMS (API.md, "LTI 1.3
Advantage"; docs/lti.md)."""
