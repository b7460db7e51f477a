"""Durable agents: a model loop whose every model call and tool call is a journaled step.

```python
from agentflow import RunContext, workflow
from agentflow.agents import Agent, OpenAIModel, tool


@tool
def lookup_order(order_id: str) -> dict[str, str]:
    # The docstring (summary, Args: section) describes the tool to the model.
    return {"order_id": order_id, "status": "shipped"}


support = Agent("support", OpenAIModel("gpt-4o-mini"), "Answer briefly.", tools=[lookup_order])


@workflow(id="answer")
async def answer(ctx: RunContext, question: str) -> str:
    return (await support.run(ctx, question)).output
```

Importing this package imports neither openai, litellm nor tiktoken: they load on first use.
"""

from .agent import DEFAULT_MODEL_RETRY, Agent, AgentResult, ToolReturn
from .budgets import Budget
from .errors import (
    AgentError,
    ApprovalEditError,
    BudgetExceededError,
    ContextWindowExceededError,
    MaxTurnsExceededError,
    ModelRetry,
    OutputValidationError,
    ToolDefinitionError,
    ToolResultError,
)
from .messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from .models import (
    FunctionModel,
    LiteLLMModel,
    Model,
    ModelAuthError,
    ModelBadRequestError,
    ModelConnectionError,
    ModelError,
    ModelQuotaExceededError,
    ModelRateLimitError,
    ModelRequest,
    ModelResponse,
    ModelServerError,
    ModelSettings,
    ModelTimeoutError,
    OpenAIModel,
    ScriptedModel,
    ScriptExhaustedError,
    tool_call,
)
from .pricing import ModelPrice
from .streaming import StreamBuffer
from .tools import Tool, tool
from .usage import RunUsage, Usage

__all__ = [
    "DEFAULT_MODEL_RETRY",
    "Agent",
    "AgentError",
    "AgentResult",
    "ApprovalEditError",
    "AssistantMessage",
    "Budget",
    "BudgetExceededError",
    "ContextWindowExceededError",
    "FunctionModel",
    "LiteLLMModel",
    "MaxTurnsExceededError",
    "Message",
    "Model",
    "ModelAuthError",
    "ModelBadRequestError",
    "ModelConnectionError",
    "ModelError",
    "ModelPrice",
    "ModelQuotaExceededError",
    "ModelRateLimitError",
    "ModelRequest",
    "ModelResponse",
    "ModelRetry",
    "ModelServerError",
    "ModelSettings",
    "ModelTimeoutError",
    "OpenAIModel",
    "OutputValidationError",
    "RunUsage",
    "ScriptExhaustedError",
    "ScriptedModel",
    "StreamBuffer",
    "SystemMessage",
    "Tool",
    "ToolCall",
    "ToolDefinitionError",
    "ToolMessage",
    "ToolResultError",
    "ToolReturn",
    "Usage",
    "UserMessage",
    "tool",
    "tool_call",
]
