"""A customer-support agent: classify, escalate when unsure, answer through tools.

Two agents in one durable workflow (``support_reply``):

1. ``classifier`` gives a structured ``Classification`` (category, confidence, summary);
2. below 0.6 confidence the run waits for a human approval named ``escalation`` (approve,
   optionally correcting ``{"category": ...}``, or reject to take the case over);
3. ``responder`` searches the knowledge base (``search_kb``) and sends the reply through the
   ``send_reply`` tool, streaming its text to the run's ``reply`` stream.

Every model call and tool call is a journaled step: kill the worker at any point and the
run resumes without calling the model or sending the e-mail again.

It runs offline by default (a deterministic stand-in model). With ``OPENAI_API_KEY`` set it
uses gpt-4o-mini; ``AGENTFLOW_MODEL=openai:<model>`` (with ``OPENAI_BASE_URL`` for a local
vLLM/Ollama server) or any litellm model string (``AGENTFLOW_MODEL=anthropic/claude-...``)
picks another. Run it::

    agentflow dev examples.support_agent:engine
    agentflow trigger examples.support_agent:engine support_reply \\
        --payload '{"customer_email": "ada@example.com", "message": "I was charged twice"}'

or all in one process, answering the escalation automatically:
``python -m examples.support_agent``.
"""

from .agents import Classification, SupportTask, build_model, classifier, responder
from .kb import ARTICLES, outbox
from .workflow import CONFIDENCE_THRESHOLD, SupportOutcome, SupportQuery, engine, support_reply

__all__ = [
    "ARTICLES",
    "CONFIDENCE_THRESHOLD",
    "Classification",
    "SupportOutcome",
    "SupportQuery",
    "SupportTask",
    "build_model",
    "classifier",
    "engine",
    "outbox",
    "responder",
    "support_reply",
]
