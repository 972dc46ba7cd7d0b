"""Custom checkov policies for what its built-in checks miss on this SAM stack.

Loaded with ``checkov --external-checks-dir checks/checkov``; each module registers one check
(``CKV_AISTUDIOS_<n>``) on the transformed CloudFormation template.
"""
