"""Operator commands: start, follow, cancel and redrive exports on a deployed stack.

They use the caller's AWS credentials (a boto3 session, as the AWS CLI builds it) and the
product's own library, so that ``start`` starts exactly what ``POST /exports`` starts and
``status`` answers what ``GET /exports/{exportId}`` answers. With ``AWS_ENDPOINT_URL`` they
reach the local stack served by ``aistudios-export local up`` in the same way.

- :mod:`.stack`: the deployed stack, found by name, and its outputs;
- :mod:`.commands`: one function per command;
- :mod:`.follow`: the bounded wait loops of ``--wait``;
- :mod:`.progress`: progress bars on a terminal, plain lines elsewhere;
- :mod:`.exits`: the exit statuses and the error that carries one.
"""
