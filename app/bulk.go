package app

import (
	"context"

	"github.com/mdmd/mdmd/bulk"
	"github.com/mdmd/mdmd/commands"
)

// approvalExecutor carries out approved actions: device and group wipes
// through the command service, bulk wipes through the bulk service (set
// once it exists, as it requests its approvals from the approval service).
type approvalExecutor struct {
	*commands.Service
	bulk *bulk.Service
}

func (e *approvalExecutor) StartBulkAction(ctx context.Context, id, by string) (any, error) {
	return e.bulk.StartBulkAction(ctx, id, by)
}
